#include "support/tls_support.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "core/tokens.hpp"
#include "io/tokens.hpp"

namespace sweepd::test {

namespace {

constexpr const char* openssl = "/usr/bin/openssl";

bool run_openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{openssl};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = run_command(argv, {}, std::chrono::seconds(30));
  EXPECT_EQ(r.exit_code, 0) << args.front() << ": " << r.err;
  return r.exit_code == 0;
}

}  // namespace

test_certificates::test_certificates(const temp_dir& dir)
    : ca_cert(dir.file("ca.crt")),
      server_cert(dir.file("server.crt")),
      server_key(dir.file("server.key")),
      expired_cert(dir.file("expired.crt")),
      rogue_cert(dir.file("rogue.crt")) {
  const std::string ca_key = dir.file("ca.key");
  const std::string csr = dir.file("server.csr");
  const std::string ext = dir.file("server.ext");
  std::ofstream(ext) << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  // EC P-256 keys: generated in milliseconds, unlike RSA.
  const std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                                       "-nodes"};
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  ok = run_openssl(with(with({"req", "-x509"}, ec), {"-keyout", ca_key, "-out", ca_cert, "-days",
                                                     "2", "-subj", "/CN=sweepd test CA"})) &&
       run_openssl(with(with({"req"}, ec),
                        {"-keyout", server_key, "-out", csr, "-subj", "/CN=localhost"})) &&
       run_openssl({"x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", server_cert, "-days", "2", "-extfile", ext}) &&
       // Its end a day before its start: expired from the moment it is made.
       run_openssl({"x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
                    "-out", expired_cert, "-days", "-1", "-extfile", ext}) &&
       run_openssl({"req", "-x509", "-key", server_key, "-out", rogue_cert, "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"});
}

std::string tokens_line(const std::string& principal, const std::string& token) {
  return principal + " " + core::to_hex(io::sha256(token)) + "\n";
}

}  // namespace sweepd::test
