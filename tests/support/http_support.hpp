#pragma once

// A blocking HTTP/1.1 client for tests of sweepd's metrics endpoint: raw requests over TCP to
// 127.0.0.1, each bounded in time, so that a test can send what no library would (a POST, a huge
// header, half a request).
//
//   auto r = sweepd::test::http_get(port, "/metrics");
//   EXPECT_EQ(r.status, 200);

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace sweepd::test {

struct http_reply {
  int status = 0;    // 0 when no status line came
  std::string head;  // status line and headers
  std::string body;
  /// The first header of that name (case-insensitive), without surrounding spaces.
  std::optional<std::string> header(const std::string& name) const;
};

/// Sends `raw` to 127.0.0.1:`port` and reads until the server closes or `timeout` passes.
std::string http_exchange(std::uint16_t port, const std::string& raw,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));
/// Splits a raw response into status, head and body.
http_reply parse_http_reply(const std::string& raw);
/// `METHOD path` with Connection: close; the reply.
http_reply http_request(std::uint16_t port, const std::string& method, const std::string& path);
inline http_reply http_get(std::uint16_t port, const std::string& path) {
  return http_request(port, "GET", path);
}
/// A TCP port on 127.0.0.1 that was free a moment ago (bound and released), for a server that
/// must be told its port in advance.
std::uint16_t free_tcp_port();

}  // namespace sweepd::test
