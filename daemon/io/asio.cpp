// Asio is compiled once here (BOOST_ASIO_SEPARATE_COMPILATION), not in every file using it.
#include <boost/asio/impl/src.hpp>
