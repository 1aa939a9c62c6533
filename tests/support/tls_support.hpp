#pragma once

// Certificates for TLS tests, made by the `openssl` command in a temp dir: a CA, a server
// certificate it signed for localhost and 127.0.0.1, an expired one, and one from a CA nobody
// trusts. Plus a tokens file line for a token.
//
//   test::temp_dir dir;
//   test::test_certificates certs(dir);       // dies (ASSERT) if openssl fails
//   ... remote: {cert_file: certs.server_cert, key_file: certs.server_key, ...}
//   ... client CA: certs.ca_cert

#include <string>

#include "support/process_support.hpp"

namespace sweepd::test {

struct test_certificates {
  explicit test_certificates(const temp_dir& dir);

  std::string ca_cert;
  std::string server_cert;  // signed by ca_cert, valid now, for localhost and 127.0.0.1
  std::string server_key;
  std::string expired_cert;  // signed by ca_cert, expired; key: server_key
  std::string rogue_cert;    // self-signed (no CA the client trusts); key: server_key
  bool ok = false;
};

/// "NAME SHA256-HEX\n" for a tokens file.
std::string tokens_line(const std::string& principal, const std::string& token);

}  // namespace sweepd::test
