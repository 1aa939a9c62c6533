#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

namespace sweepd::io {

namespace asio = boost::asio;

/// A server TLS context (TLS 1.2 or newer only), or why the files cannot be used.
struct tls_context_result {
  std::shared_ptr<asio::ssl::context> context;
  std::string error;
};

/// Reads the certificate chain (PEM) and its private key, and checks that they belong together.
/// Errors name the file and carry OpenSSL's reason.
tls_context_result load_server_tls(const std::string& cert_file, const std::string& key_file);

/// The reason on top of OpenSSL's error queue (which it clears), or `fallback`.
std::string openssl_reason(const std::string& fallback);

}  // namespace sweepd::io
