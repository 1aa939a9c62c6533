// Beast and Asio's SSL support are compiled once here (BOOST_BEAST_SEPARATE_COMPILATION and
// BOOST_ASIO_SEPARATE_COMPILATION), not in every file using them.
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
