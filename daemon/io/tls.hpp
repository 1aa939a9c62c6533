#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "core/result.hpp"

namespace sweepd::io {

namespace asio = boost::asio;

/// A server TLS context (TLS 1.2 or newer only) from the certificate chain (PEM) and its private
/// key, checked to belong together; else why not, naming the file with OpenSSL's reason.
core::result<std::shared_ptr<asio::ssl::context>> load_server_tls(const std::string& cert_file,
                                                                  const std::string& key_file);

/// The reason on top of OpenSSL's error queue (which it clears), or `fallback`.
std::string openssl_reason(const std::string& fallback);

}  // namespace sweepd::io
