// The control server's TLS listener over real TLS (certificates made by the openssl command):
// the handshake and hello deadline, authentication of the first line, the same lines, limits and
// ordering as the Unix socket, and what a client sees of a bad certificate.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "core/protocol.hpp"
#include "core/service.hpp"
#include "core/supervisor.hpp"
#include "io/client.hpp"
#include "io/control_server.hpp"
#include "io/tls.hpp"
#include "support/process_support.hpp"
#include "support/tls_support.hpp"

namespace sweepd::io {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

class RemoteServerTest : public ::testing::Test {
 protected:
  void start(const std::string& cert, remote_options remote = {},
             control_server_options opts = {}) {
    ASSERT_TRUE(certs_.ok);
    opts.path = dir_.file("s.sock");
    server_ = std::make_unique<control_server>(
        io_, opts, [this](std::string_view line, const peer_credentials& peer, bool) {
          core::caller who{peer.uid, peer.pid, false};
          principals_seen_.push_back(peer.principal);
          who.principal = principals_seen_.back();
          core::handled h = service_.handle(
              line, who, {core::mono_clock::now(), std::chrono::system_clock::now()});
          if (h.result.change) runs_.apply(std::move(*h.result.change));
          return h.reply;
        });
    ASSERT_EQ(server_->open(), core::success);
    auto tls = load_server_tls(cert, certs_.server_key);
    ASSERT_TRUE(tls) << tls.error();
    remote.listen = "127.0.0.1:0";
    auto opened = server_->open_remote(remote, *tls, [](std::string_view line, const std::string&) {
      authentication a;
      const auto parsed = core::parse_request(line);
      const auto* hello = parsed.req ? std::get_if<core::hello_request>(&*parsed.req) : nullptr;
      if (hello != nullptr && hello->token == "good") {
        a.principal = "alice";
        a.reply = core::ok_reply({{"server", "sweepd"}});
      } else {
        a.reply = core::error_reply({core::error_code::forbidden, "no"});
      }
      return a;
    });
    ASSERT_EQ(opened, core::success);
    address_.remote = true;
    address_.host = "127.0.0.1";
    const std::string bound = server_->remote_address();
    address_.port = bound.substr(bound.rfind(':') + 1);
    server_->start();
    loop_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (server_) asio::post(io_, [this] { server_->stop(); });
    if (loop_.joinable()) loop_.join();
  }

  client connect_remote(const std::string& token = "good") {
    client c;
    EXPECT_TRUE(c.connect(address_, {certs_.ca_cert}, token)) << c.last_error();
    return c;
  }

  /// A raw TCP connection to the TLS port.
  int raw_tcp() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address_.port)));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    return fd;
  }

  test::temp_dir dir_;
  test::test_certificates certs_{dir_};
  asio::io_context io_;
  core::supervisor runs_{core::supervisor_limits{}};
  core::service service_{runs_, "test", core::mono_clock::now(), nullptr};
  std::unique_ptr<control_server> server_;
  std::thread loop_;
  daemon_address address_;
  std::vector<std::string> principals_seen_;  // loop thread only, read after it settles
};

TEST_F(RemoteServerTest, AuthenticatedConnectionIsServedAsItsPrincipalWithPipelining) {
  start(certs_.server_cert);
  client c = connect_remote();
  ASSERT_TRUE(c.send_raw(R"({"op":"register","run":"r1"})"
                         "\n"
                         R"({"op":"start","run":"r1"})"
                         "\n"
                         R"({"op":"show","run":"r1"})"
                         "\n"));
  EXPECT_THAT(c.read_line().value_or(""), HasSubstr(R"("state":"initializing")"));
  EXPECT_THAT(c.read_line().value_or(""), HasSubstr(R"("state":"running")"));
  EXPECT_THAT(c.read_line().value_or(""), HasSubstr(R"("owner":"token:alice")"));
}

TEST_F(RemoteServerTest, HelloAndRequestsInOneWriteAreAllAnswered) {
  start(certs_.server_cert);
  tls_connection raw;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  ASSERT_TRUE(raw.connect("127.0.0.1", address_.port, {certs_.ca_cert}, deadline)) << raw.error();
  ASSERT_TRUE(raw.send("{\"op\":\"hello\",\"token\":\"good\"}\n{\"op\":\"status\"}\n", deadline));
  std::string got;
  char buf[4096];
  while (std::count(got.begin(), got.end(), '\n') < 2) {
    const long n = raw.receive(buf, sizeof(buf), deadline);
    ASSERT_GT(n, 0) << raw.error();
    got.append(buf, static_cast<std::size_t>(n));
  }
  EXPECT_THAT(got, HasSubstr(R"("server":"sweepd")"));
  EXPECT_THAT(got, HasSubstr(R"("uptime_s")"));
}

TEST_F(RemoteServerTest, WrongTokenIsForbiddenAndClosed) {
  start(certs_.server_cert);
  client c;
  EXPECT_FALSE(c.connect(address_, {certs_.ca_cert}, "bad"));
  EXPECT_THAT(c.last_error(), HasSubstr("refused the connection: forbidden: no"));
  // The server goes on serving others.
  client ok = connect_remote();
  EXPECT_EQ(ok.call({{"op", "status"}}).value_or(json())["ok"], true);
}

TEST_F(RemoteServerTest, AnyFirstLineButAHelloIsForbiddenAndClosed) {
  start(certs_.server_cert);
  tls_connection raw;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  ASSERT_TRUE(raw.connect("127.0.0.1", address_.port, {certs_.ca_cert}, deadline));
  ASSERT_TRUE(raw.send("{\"op\":\"status\"}\n{\"op\":\"status\"}\n", deadline));
  std::string got;
  char buf[4096];
  for (long n; (n = raw.receive(buf, sizeof(buf), deadline)) > 0;) {
    got.append(buf, static_cast<std::size_t>(n));
  }
  EXPECT_THAT(got, HasSubstr("forbidden"));
  EXPECT_EQ(std::count(got.begin(), got.end(), '\n'), 1) << got;  // then the end of the stream
  EXPECT_TRUE(principals_seen_.empty());                          // the handler never saw a line
}

TEST_F(RemoteServerTest, PlaintextOnTheTlsPortIsClosedWithoutAnswer) {
  start(certs_.server_cert);
  const int fd = raw_tcp();
  const std::string line = "{\"op\":\"status\"}\n";
  ASSERT_EQ(::send(fd, line.data(), line.size(), MSG_NOSIGNAL), static_cast<ssize_t>(line.size()));
  char buf[256];
  ssize_t n;
  std::string got;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) got.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  EXPECT_THAT(got, ::testing::Not(HasSubstr("uptime_s")));
  client ok = connect_remote();
  EXPECT_EQ(ok.call({{"op", "status"}}).value_or(json())["ok"], true);
}

TEST_F(RemoteServerTest, SilentPeerIsClosedAtTheHandshakeDeadline) {
  remote_options remote;
  remote.handshake_timeout = std::chrono::milliseconds(200);
  start(certs_.server_cert, remote);
  const int fd = raw_tcp();
  const auto started = std::chrono::steady_clock::now();
  char buf[16];
  EXPECT_LE(::recv(fd, buf, sizeof(buf), 0), 0);  // blocks until the server closes it
  ::close(fd);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST_F(RemoteServerTest, OverLongLineIsTooLargeAndClosedAsOnTheUnixSocket) {
  control_server_options opts;
  opts.limits.max_line_bytes = 1024;
  start(certs_.server_cert, {}, opts);
  client c = connect_remote();
  ASSERT_TRUE(c.send_raw(std::string(4096, 'x') + "\n"));
  EXPECT_THAT(c.read_line().value_or(""), HasSubstr("too_large"));
  EXPECT_FALSE(c.read_line(std::chrono::seconds(5)));
}

TEST_F(RemoteServerTest, ConnectionsPastRemoteMaxConnectionsAreClosed) {
  remote_options remote;
  remote.max_connections = 2;
  start(certs_.server_cert, remote);
  client a = connect_remote();
  client b = connect_remote();
  client c;
  EXPECT_FALSE(c.connect(address_, {certs_.ca_cert}, "good", std::chrono::seconds(5)));
  // The Unix socket is not held to the remote cap.
  client local;
  ASSERT_TRUE(local.connect(dir_.file("s.sock"))) << local.last_error();
  EXPECT_EQ(local.call({{"op", "status"}}).value_or(json())["ok"], true);
}

TEST_F(RemoteServerTest, ClientRefusesAnExpiredCertificate) {
  start(certs_.expired_cert);
  client c;
  EXPECT_FALSE(c.connect(address_, {certs_.ca_cert}, "good"));
  EXPECT_THAT(c.last_error(), HasSubstr("certificate has expired"));
}

TEST_F(RemoteServerTest, ClientRefusesACertificateFromAnUntrustedIssuer) {
  start(certs_.rogue_cert);
  client c;
  EXPECT_FALSE(c.connect(address_, {certs_.ca_cert}, "good"));
  EXPECT_THAT(c.last_error(), HasSubstr("not trusted"));
}

TEST_F(RemoteServerTest, NewCertificateAppliesToNewConnections) {
  start(certs_.expired_cert);
  auto fresh = load_server_tls(certs_.server_cert, certs_.server_key);
  ASSERT_TRUE(fresh) << fresh.error();
  std::promise<void> done;
  asio::post(io_, [&] {
    server_->set_tls_context(*fresh);
    done.set_value();
  });
  done.get_future().wait();
  client c = connect_remote();
  EXPECT_TRUE(c.connected());
}

TEST(ServerTls, MissingOrMismatchedFilesNameTheKey) {
  test::temp_dir dir;
  test::test_certificates certs(dir);
  ASSERT_TRUE(certs.ok);
  EXPECT_THAT(load_server_tls(dir.file("nope.crt"), certs.server_key).error().message,
              HasSubstr("remote.cert_file"));
  EXPECT_THAT(load_server_tls(certs.server_cert, dir.file("nope.key")).error().message,
              HasSubstr("remote.key_file"));
  EXPECT_THAT(load_server_tls(certs.server_cert, certs.ca_cert).error().message,
              HasSubstr("remote.key_file"));
}

TEST_F(RemoteServerTest, NamesWhatIsWrongWithTheListenAddress) {
  ASSERT_TRUE(certs_.ok);
  auto tls = load_server_tls(certs_.server_cert, certs_.server_key);
  ASSERT_TRUE(tls) << tls.error();
  control_server server(io_, {}, [](std::string_view, const peer_credentials&, bool) {
    return reply(core::ok_reply({}));
  });
  const auto refusal = [&](const std::string& listen) -> std::string {
    remote_options remote;
    remote.listen = listen;
    auto opened = server.open_remote(
        remote, *tls, [](std::string_view, const std::string&) { return authentication{}; });
    return opened ? "opened" : opened.error().message;
  };
  EXPECT_EQ(refusal("7443"), "remote.listen '7443': expected HOST:PORT");
  EXPECT_EQ(refusal("127.0.0.1:https"),
            "remote.listen '127.0.0.1:https': the port is not a number from 0 to 65535");
  EXPECT_EQ(refusal("127.0.0.1:65536"),
            "remote.listen '127.0.0.1:65536': the port is not a number from 0 to 65535");
  EXPECT_EQ(refusal("localhost:7443"),
            "remote.listen 'localhost:7443': 'localhost' is not an IP address (use 0.0.0.0, [::] "
            "or an interface's address)");
  EXPECT_EQ(refusal("127.0.0.1:0"), "opened");
}

TEST(DaemonAddress, ParsesTlsAddressesAndSocketPaths) {
  const auto tls = parse_daemon_address("tls://sweeps.lab:7443");
  ASSERT_TRUE(tls) << tls.error();
  EXPECT_TRUE(tls->remote);
  EXPECT_EQ(tls->host, "sweeps.lab");
  EXPECT_EQ(tls->port, "7443");
  const auto v6 = parse_daemon_address("tls://[::1]:7443");
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(v6->host, "::1");
  const auto path = parse_daemon_address("/run/sweepd/sweepd.sock");
  ASSERT_TRUE(path) << path.error();
  EXPECT_FALSE(path->remote);
  EXPECT_EQ(path->path, "/run/sweepd/sweepd.sock");
  const auto prefixed = parse_daemon_address("unix:/x.sock");
  ASSERT_TRUE(prefixed) << prefixed.error();
  EXPECT_EQ(prefixed->path, "/x.sock");
}

TEST(DaemonAddress, RefusesWhatItCannotReachWithAReason) {
  EXPECT_EQ(parse_daemon_address("tls://host").error().message,
            "address 'tls://host': expected tls://HOST:PORT");
  EXPECT_EQ(parse_daemon_address("tls://host:port").error().message,
            "address 'tls://host:port': the port is not a number");
  EXPECT_EQ(parse_daemon_address("http://host:80").error().message,
            "address 'http://host:80': only tls://HOST:PORT or a socket path are known");
  EXPECT_EQ(parse_daemon_address("").error().message, "the socket path is empty");
  EXPECT_EQ(parse_daemon_address("unix:").error().message, "the socket path is empty");
}

}  // namespace
}  // namespace sweepd::io
