#include "io/tls.hpp"

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace sweepd::io {

std::string openssl_reason(const std::string& fallback) {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return fallback;
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

core::result<std::shared_ptr<asio::ssl::context>> load_server_tls(const std::string& cert_file,
                                                                  const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  ERR_clear_error();
  // TLS 1.2 is the oldest version without known protocol breaks; compression off (CRIME).
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
    return core::failure{"cannot require TLS 1.2: " + openssl_reason("unknown error")};
  }
  SSL_CTX_set_options(
      native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_use_certificate_chain_file(native, cert_file.c_str()) != 1) {
    return core::failure{
        fmt::format("remote.cert_file {}: cannot use it as a PEM certificate chain: {}", cert_file,
                    openssl_reason("unreadable"))};
  }
  if (SSL_CTX_use_PrivateKey_file(native, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return core::failure{fmt::format("remote.key_file {}: cannot use it as a PEM private key: {}",
                                     key_file, openssl_reason("unreadable"))};
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    return core::failure{fmt::format("remote.key_file {} is not the key of remote.cert_file {}: {}",
                                     key_file, cert_file, openssl_reason("mismatch"))};
  }
  return ctx;
}

}  // namespace sweepd::io
