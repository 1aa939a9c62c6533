// Remote workers against the real sweepd over real TLS (DESIGN §11): a worker's whole lifecycle,
// tokens and principals, what is refused and closed, the token kept out of every log and reply,
// the tokens file reloaded, sweepctl and `sweepctl exec` over TLS, and a thousand remote
// connections held open while local clients are served.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <thread>

#include "io/client.hpp"
#include "support/daemon_support.hpp"
#include "support/http_support.hpp"
#include "support/tls_support.hpp"

namespace sweepd {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string alice_token = "alice-token-0123456789-abcdefghijklmnopq";
const std::string bob_token = "bob-token-9876543210-zyxwvutsrqponmlkji";

class RemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certs_.ok);
    write_tokens(test::tokens_line("alice", alice_token) + test::tokens_line("ops", "ops-token"));
    port_ = test::free_tcp_port();
    daemon_.emplace(dir_, config());
    daemon_->start();
  }

  std::string config() const {
    return "remote: {listen: \"127.0.0.1:" + std::to_string(port_) +
           "\", cert_file: " + certs_.server_cert + ", key_file: " + certs_.server_key +
           ", tokens_file: " + dir_.file("tokens") +
           ", handshake_timeout: 2, admin_principals: [ops]}\n";
  }

  void write_tokens(const std::string& text) {
    std::ofstream(dir_.file("tokens.next")) << text;
    std::filesystem::rename(dir_.file("tokens.next"), dir_.file("tokens"));
  }

  io::daemon_address address() const { return {true, "", "127.0.0.1", std::to_string(port_)}; }

  /// The remote connections `status` counts, asked again (for at most 5 s) until it says `want`.
  /// A refused connection is counted until its coroutine has finished closing it, which may be
  /// just after the refusal reached the client: no event tells the test.
  json remote_connections_once_settled(int want) {
    json connections;
    for (const auto until = std::chrono::steady_clock::now() + 5s;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(10ms)) {
      connections = daemon_->call({{"op", "status"}})["remote"]["connections"];
      if (connections == want) break;
    }
    return connections;
  }
  std::string address_text() const { return "tls://127.0.0.1:" + std::to_string(port_); }

  io::client remote(const std::string& token) {
    io::client c;
    EXPECT_TRUE(c.connect(address(), {certs_.ca_cert}, token)) << c.last_error();
    return c;
  }

  static json ok(io::client& c, const json& request) {
    auto reply = c.call(request);
    EXPECT_TRUE(reply) << c.last_error();
    EXPECT_EQ(reply.value_or(json())["ok"], true) << request.dump() << " -> " << reply->dump();
    return reply.value_or(json());
  }

  std::vector<std::string> sweepctl_env(const std::string& token) const {
    return {"SWEEPD_ADDRESS=" + address_text(), "SWEEPD_TOKEN=" + token,
            "HOME=" + dir_.path().string(), "SWEEPD_SPOOL_DIR=" + dir_.file("spool")};
  }

  test::temp_dir dir_;
  test::test_certificates certs_{dir_};
  std::uint16_t port_ = 0;
  std::optional<test::sweepd_under_test> daemon_;
};

TEST_F(RemoteTest, RemoteWorkerLifecycleIsOwnedByItsPrincipal) {
  io::client alice = remote(alice_token);
  EXPECT_EQ(ok(alice, {{"op", "register"}, {"run", "r1"}, {"sweep", "s1"}})["state"],
            "initializing");
  EXPECT_EQ(ok(alice, {{"op", "start"}, {"run", "r1"}})["state"], "running");
  EXPECT_EQ(ok(alice, {{"op", "heartbeat"}, {"run", "r1"}, {"progress", 10}})["state"], "running");
  EXPECT_EQ(ok(alice, {{"op", "complete"}, {"run", "r1"}, {"objective", 0.9}})["state"], "success");
  const json shown = daemon_->call({{"op", "show"}, {"run", "r1"}});
  EXPECT_EQ(shown["run"]["owner"], "token:alice");
  EXPECT_EQ(shown["run"]["objective"], 0.9);
  EXPECT_EQ(daemon_->call({{"op", "list"}})["runs"][0]["owner"], "token:alice");
  const json status = daemon_->call({{"op", "status"}});
  EXPECT_EQ(status["remote"]["connections"], 1);
  EXPECT_EQ(status["remote"]["principals"], 2);
  EXPECT_THAT(status.dump(), Not(HasSubstr(alice_token)));
  EXPECT_EQ(daemon_->stop(), 0) << daemon_->proc().err();
  // The owner survives a restart (journal schema 4).
  daemon_->start();
  EXPECT_EQ(daemon_->call({{"op", "show"}, {"run", "r1"}})["run"]["owner"], "token:alice");
}

TEST_F(RemoteTest, APrincipalCannotChangeAnothersRunButAnAdminPrincipalCan) {
  write_tokens(test::tokens_line("alice", alice_token) + test::tokens_line("bob", bob_token) +
               test::tokens_line("ops", "ops-token"));
  ASSERT_TRUE(daemon_->reload(config())) << daemon_->proc().err();
  io::client alice = remote(alice_token);
  io::client bob = remote(bob_token);
  ok(alice, {{"op", "register"}, {"run", "ra"}, {"sweep", "sa"}});
  const auto refused = bob.call({{"op", "complete"}, {"run", "ra"}, {"objective", 1.0}});
  ASSERT_TRUE(refused);
  EXPECT_EQ((*refused)["error"]["code"], "forbidden");
  EXPECT_THAT((*refused)["error"]["message"].get<std::string>(), HasSubstr("token:alice"));
  EXPECT_EQ((*bob.call({{"op", "register"}, {"run", "rb"}, {"sweep", "sa"}}))["error"]["code"],
            "forbidden");
  io::client ops = remote("ops-token");
  ok(ops, {{"op", "fail"}, {"run", "ra"}, {"error", "stopped by ops"}});
}

TEST_F(RemoteTest, WatchPeerIsRefusedRemotely) {
  io::client alice = remote(alice_token);
  const auto reply = alice.call({{"op", "register"}, {"run", "w"}, {"watch_peer", true}});
  ASSERT_TRUE(reply);
  EXPECT_EQ((*reply)["error"]["code"], "bad_request");
  EXPECT_THAT((*reply)["error"]["message"].get<std::string>(),
              HasSubstr("process watch needs the local socket"));
}

TEST_F(RemoteTest, WrongTokenAndMissingHelloAreForbiddenAndTheTokenIsInNoLog) {
  io::client c;
  EXPECT_FALSE(c.connect(address(), {certs_.ca_cert}, "not-" + alice_token));
  EXPECT_THAT(c.last_error(), HasSubstr("forbidden"));
  EXPECT_THAT(c.last_error(), Not(HasSubstr(alice_token)));
  io::tls_connection raw;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  ASSERT_TRUE(raw.connect("127.0.0.1", std::to_string(port_), {certs_.ca_cert}, deadline));
  ASSERT_TRUE(raw.send("{\"op\":\"register\",\"run\":\"x\",\"token\":\"" + alice_token + "\"}\n",
                       deadline));
  std::string got;
  char buf[1024];
  for (long n; (n = raw.receive(buf, sizeof(buf), deadline)) > 0;) got.append(buf, n);
  EXPECT_THAT(got, HasSubstr("forbidden"));
  EXPECT_THAT(got, Not(HasSubstr(alice_token)));
  io::client alice = remote(alice_token);  // a good one, logged at debug level
  ok(alice, {{"op", "register"}, {"run", "r"}});
  EXPECT_EQ(daemon_->stop(), 0);
  const std::string log = daemon_->proc().err();
  EXPECT_THAT(log, HasSubstr("refused: the token is not valid"));
  EXPECT_THAT(log, HasSubstr("is token:alice"));
  EXPECT_THAT(log, Not(HasSubstr(alice_token)));
}

TEST_F(RemoteTest, HellosAreCountedInTheRequestsMetricAcceptedOrForbidden) {
  ASSERT_EQ(daemon_->stop(), 0);
  const std::uint16_t metrics_port = test::free_tcp_port();
  daemon_.emplace(
      dir_, config() + "metrics: {listen: \"127.0.0.1:" + std::to_string(metrics_port) + "\"}\n");
  daemon_->start();
  // The count in a scrape of `sweepd_requests_total{op="hello",result=…}` (0 when absent).
  const auto hellos = [&](const std::string& result) {
    const auto scraped = test::http_get(metrics_port, "/metrics");
    EXPECT_EQ(scraped.status, 200) << scraped.head;
    const std::string series = R"(sweepd_requests_total{op="hello",result=")" + result + "\"} ";
    const auto at = scraped.body.find(series);
    return at == std::string::npos ? 0.0 : std::stod(scraped.body.substr(at + series.size()));
  };
  const double ok_before = hellos("ok");  // the fixture's own local hellos
  io::client alice = remote(alice_token);
  ok(alice, {{"op", "status"}});
  io::client wrong;
  EXPECT_FALSE(wrong.connect(address(), {certs_.ca_cert}, "not-a-token"));
  EXPECT_TRUE(wrong.refused());
  EXPECT_EQ(hellos("ok"), ok_before + 1);
  EXPECT_EQ(hellos("forbidden"), 1);
}

TEST_F(RemoteTest, RepeatedFailuresFromAnAddressAreRefusedForAWhile) {
  for (int i = 0; i < 10; ++i) {
    io::client c;
    EXPECT_FALSE(c.connect(address(), {certs_.ca_cert}, "guess-" + std::to_string(i)));
  }
  io::client c;
  EXPECT_FALSE(c.connect(address(), {certs_.ca_cert}, alice_token));
  EXPECT_THAT(c.last_error(), HasSubstr("too many failed attempts"));
  io::client local;  // the Unix socket is not concerned
  ASSERT_TRUE(local.connect(daemon_->socket_path()));
  ok(local, {{"op", "status"}});
  EXPECT_EQ(remote_connections_once_settled(0), 0);
}

TEST_F(RemoteTest, TokensFileIsReloadedOnSighupAndABadOneKeepsTheOld) {
  io::client before;
  EXPECT_FALSE(before.connect(address(), {certs_.ca_cert}, bob_token));
  write_tokens(test::tokens_line("alice", alice_token) + test::tokens_line("bob", bob_token));
  ASSERT_TRUE(daemon_->reload(config())) << daemon_->proc().err();
  io::client bob = remote(bob_token);
  ok(bob, {{"op", "status"}});
  write_tokens("bob " + bob_token + "\n");  // the token itself: refused
  ASSERT_TRUE(daemon_->reload(config()));
  EXPECT_THAT(daemon_->proc().err(), HasSubstr("keeping the 2 token(s) in use"));
  EXPECT_THAT(daemon_->proc().err(), Not(HasSubstr(bob_token)));
  io::client again = remote(bob_token);
  EXPECT_TRUE(again.connected());
}

TEST_F(RemoteTest, ConnectionsOfAPrincipalWhoseTokenWasRemovedAreClosedAtTheReload) {
  write_tokens(test::tokens_line("alice", alice_token) + test::tokens_line("bob", bob_token));
  ASSERT_TRUE(daemon_->reload(config())) << daemon_->proc().err();
  io::client alice1 = remote(alice_token);
  io::client alice2 = remote(alice_token);
  io::client bob = remote(bob_token);
  ok(alice1, {{"op", "register"}, {"run", "ra"}});
  write_tokens(test::tokens_line("bob", bob_token));
  ASSERT_TRUE(daemon_->reload(config())) << daemon_->proc().err();
  // The reload closed both of alice's connections before it said READY again.
  for (io::client* c : {&alice1, &alice2}) {
    EXPECT_FALSE(c->call({{"op", "heartbeat"}, {"run", "ra"}})) << "still served after the reload";
  }
  ok(bob, {{"op", "status"}});
  io::client again;
  EXPECT_FALSE(again.connect(address(), {certs_.ca_cert}, alice_token));
  EXPECT_TRUE(again.refused());
  EXPECT_EQ(remote_connections_once_settled(1), 1);
  EXPECT_EQ(daemon_->stop(), 0);
  const std::string log = daemon_->proc().err();
  const std::string line = "token:alice has no token any more in " + dir_.file("tokens") +
                           "; closed its 2 connection(s)";
  EXPECT_THAT(log, HasSubstr(line));
  EXPECT_EQ(log.find(line), log.rfind(line));  // once for the principal
  EXPECT_THAT(log, Not(HasSubstr("token:bob has")));
  EXPECT_THAT(log, Not(HasSubstr(alice_token)));
}

TEST_F(RemoteTest, ConnectionsOfARotatedTokenAreClosedAndTheNewTokenIsServed) {
  // alice's token leaked and was replaced under the same name: what the old one opened is closed.
  const std::string rotated = "alice-token-rotated-0123456789-abcdefghij";
  write_tokens(test::tokens_line("alice", alice_token) + test::tokens_line("bob", bob_token));
  ASSERT_TRUE(daemon_->reload(config())) << daemon_->proc().err();
  io::client old_alice = remote(alice_token);
  io::client bob = remote(bob_token);
  ok(old_alice, {{"op", "register"}, {"run", "ra"}});
  write_tokens(test::tokens_line("alice", rotated) + test::tokens_line("bob", bob_token));
  ASSERT_TRUE(daemon_->reload(config())) << daemon_->proc().err();
  EXPECT_FALSE(old_alice.call({{"op", "heartbeat"}, {"run", "ra"}}))
      << "still served after the reload";
  ok(bob, {{"op", "status"}});  // an unchanged token keeps its connections
  io::client again;
  EXPECT_FALSE(again.connect(address(), {certs_.ca_cert}, alice_token));
  EXPECT_TRUE(again.refused());
  io::client new_alice = remote(rotated);
  ok(new_alice, {{"op", "heartbeat"}, {"run", "ra"}});  // still alice's run
  EXPECT_EQ(daemon_->stop(), 0);
  const std::string log = daemon_->proc().err();
  EXPECT_THAT(log, HasSubstr("token:alice has a new token in " + dir_.file("tokens") +
                             "; closed its 1 connection(s)"));
  EXPECT_THAT(log, Not(HasSubstr("token:bob has")));
  EXPECT_THAT(log, Not(HasSubstr(rotated)));
}

TEST_F(RemoteTest, SweepctlTalksToTheTlsListener) {
  auto r = test::run_command({SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "status"},
                             sweepctl_env(alice_token), 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(address_text()));
  r = test::run_command({SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "register", "rc"},
                        sweepctl_env(alice_token), 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::ofstream(dir_.file("token")) << bob_token << "\n";
  r = test::run_command({SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "--token-file",
                         dir_.file("token"), "complete", "rc"},
                        sweepctl_env(""), 20s);
  EXPECT_EQ(r.exit_code, 4) << r.err;  // bob is not in the tokens file: refused at hello
  EXPECT_THAT(r.err, HasSubstr("refused the connection: forbidden: the token is not valid"));
  EXPECT_THAT(r.err, Not(HasSubstr("is sweepd running?")));
  EXPECT_THAT(r.err, Not(HasSubstr(bob_token)));
  // The spool's link is refused the same way: the file stays for a token that is accepted.
  std::filesystem::create_directories(dir_.file("spool"));
  std::filesystem::permissions(dir_.file("spool"), std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::replace);
  std::ofstream(dir_.file("spool") + "/rs.json") << json{
      {"version", 1},
      {"socket", address_text()},
      {"run", "rs"},
      {"register", {{"op", "register"}, {"run", "rs"}, {"sweep", "s1"}}},
      {"report", {{"op", "complete"}, {"run", "rs"}, {"objective", 0.5}}},
      {"spooled_at", "2026-11-30T12:00:00.000Z"},
      {"client", "python"}}.dump();
  r = test::run_command({SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "--token-file",
                         dir_.file("token"), "spool", "flush"},
                        sweepctl_env(""), 20s);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.out, HasSubstr("rs: left: sweepd at " + address_text() +
                               " refused the connection: forbidden"));
  EXPECT_THAT(r.out + r.err, Not(HasSubstr(bob_token)));
  EXPECT_TRUE(std::filesystem::exists(dir_.file("spool") + "/rs.json"));
  r = test::run_command({SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "spool", "flush"},
                        sweepctl_env(alice_token), 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "rs: delivered success\n");  // registered from the file, then completed
  EXPECT_EQ(daemon_->call({{"op", "show"}, {"run", "rs"}})["run"]["owner"], "token:alice");
  r = test::run_command(
      {SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "--token-file", dir_.file("token"), "hello"},
      sweepctl_env(""), 20s);
  EXPECT_EQ(r.exit_code, 4) << r.err;
  r = test::run_command({SWEEPCTL_BINARY, "status"}, sweepctl_env(""), 20s);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("$SWEEPD_TOKEN"));
  r = test::run_command({SWEEPCTL_BINARY, "status"}, sweepctl_env(alice_token), 20s);
  EXPECT_EQ(r.exit_code, 3);  // no --ca-file: the test CA is not among the system's
  EXPECT_THAT(r.err, HasSubstr("not trusted"));
}

TEST_F(RemoteTest, SweepctlExecReportsOverTls) {
  auto env = sweepctl_env(alice_token);
  auto r = test::run_command({SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "exec", "--run", "ex1",
                              "--sweep", "s1", "--", "/bin/sh", "-c", "exit 0"},
                             env, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_command({SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "exec", "--run", "ex2", "--",
                         "/bin/sh", "-c", "exit 3"},
                        env, 30s);
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(daemon_->call({{"op", "show"}, {"run", "ex1"}})["run"]["state"], "success");
  const json ex2 = daemon_->call({{"op", "show"}, {"run", "ex2"}})["run"];
  EXPECT_EQ(ex2["state"], "failed");
  EXPECT_EQ(ex2["owner"], "token:alice");
  EXPECT_EQ(ex2["watch_peer"], false);
}

TEST_F(RemoteTest, SweepctlExecReconnectsAfterADroppedConnection) {
  // The daemon restarts while the command runs: exec reconnects over TLS and reports the end.
  auto env = sweepctl_env(alice_token);
  const std::string marker = dir_.file("started");
  auto exec = test::process::start(
      {SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "exec", "--run", "ex3", "--interval", "0.2",
       "--", "/bin/sh", "-c",
       "touch " + marker + "; while [ ! -e " + marker + ".go ]; do sleep 0.05; done"},
      env);
  daemon_->wait_for_state("ex3", "running");
  ASSERT_EQ(daemon_->stop(), 0);
  daemon_->start();
  std::ofstream(marker + ".go") << "";
  EXPECT_EQ(exec.wait_for(30s), 0) << exec.err();
  EXPECT_EQ(daemon_->call({{"op", "show"}, {"run", "ex3"}})["run"]["state"], "success");
}

TEST_F(RemoteTest, ReportsSpooledForTheTlsListenerAreDeliveredOverTls) {
  // Two remote execs, each with its own spool directory, end while sweepd is down: both reports
  // are spooled for the TLS address. Then `spool flush` delivers one and an exec start the other.
  const std::string go = dir_.file("go");
  auto start_exec = [&](const std::string& run, const std::string& spool, const std::string& exit) {
    auto env = sweepctl_env(alice_token);
    env.back() = "SWEEPD_SPOOL_DIR=" + spool;
    return test::process::start(
        {SWEEPCTL_BINARY, "--ca-file", certs_.ca_cert, "exec", "--run", run, "--interval", "0.2",
         "--", "/bin/sh", "-c", "while [ ! -e " + go + " ]; do sleep 0.05; done; exit " + exit},
        env);
  };
  const std::string spool_a = dir_.file("spool-a");
  const std::string spool_b = dir_.file("spool-b");
  auto a = start_exec("sa", spool_a, "0");
  auto b = start_exec("sb", spool_b, "4");
  daemon_->wait_for_state("sa", "running");
  daemon_->wait_for_state("sb", "running");
  ASSERT_EQ(daemon_->stop(), 0);
  std::ofstream(go) << "";
  EXPECT_EQ(a.wait_for(30s), 0) << a.err();
  EXPECT_EQ(b.wait_for(30s), 4) << b.err();
  EXPECT_THAT(a.err(), HasSubstr("spooled at " + spool_a + "/sa.json"));
  std::ifstream spooled(spool_a + "/sa.json");
  const json file = json::parse(spooled, nullptr, false);
  EXPECT_EQ(file["socket"], address_text());  // the daemon it was meant for
  EXPECT_THAT(file.dump(), Not(HasSubstr(alice_token)));

  daemon_->start();
  auto r = test::run_command({SWEEPCTL_BINARY, "--address", address_text(), "--ca-file",
                              certs_.ca_cert, "spool", "flush", "--spool-dir", spool_a},
                             sweepctl_env(alice_token), 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "sa: delivered success\n");
  EXPECT_FALSE(std::filesystem::exists(spool_a + "/sa.json"));
  EXPECT_EQ(daemon_->call({{"op", "show"}, {"run", "sa"}})["run"]["state"], "success");

  auto c = start_exec("sc", spool_b, "0");
  std::ofstream(go) << "";
  EXPECT_EQ(c.wait_for(30s), 0) << c.err();
  EXPECT_THAT(c.err(), HasSubstr("spooled report of run sb: delivered failed"));
  EXPECT_FALSE(std::filesystem::exists(spool_b + "/sb.json"));
  const json sb = daemon_->call({{"op", "show"}, {"run", "sb"}})["run"];
  EXPECT_EQ(sb["state"], "failed");
  EXPECT_EQ(sb["error"], "exit code 4");
  EXPECT_EQ(sb["owner"], "token:alice");
}

TEST_F(RemoteTest, SweepctlExecForwardsSignalsPromptlyWhileTheHostDoesNotAnswer) {
  // A listener that never accepts: the kernel completes the TCP handshake, then nobody answers
  // the TLS hello, so each connection attempt lasts as long as exec lets it.
  const int silent = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(silent, 64), 0);
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string silent_address = "tls://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  const std::string started = dir_.file("started");
  const std::string got = dir_.file("got-term");
  auto exec = test::process::start(
      {SWEEPCTL_BINARY, "--address", silent_address, "--ca-file", certs_.ca_cert, "--timeout", "60",
       "exec", "--run", "hang", "--", "/bin/sh", "-c",
       "trap 'touch " + got + "; exit 0' TERM; touch " + started +
           "; while :; do sleep 0.05; done"},
      sweepctl_env(alice_token));
  const auto appeared = [](const std::string& path, std::chrono::milliseconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (!std::filesystem::exists(path)) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(20ms);  // polling a file the child makes: no event to wait on
    }
    return true;
  };
  ASSERT_TRUE(appeared(started, 20s)) << exec.err();
  ASSERT_TRUE(exec.send_signal(SIGTERM));
  // Without a bound on the attempt, the signal waits for the 60 s reply timeout.
  EXPECT_TRUE(appeared(got, 10s)) << exec.err();
  EXPECT_EQ(exec.wait_for(30s), 0) << exec.err();
  ::close(silent);
}

TEST_F(RemoteTest, ThousandRemoteConnectionsHeldOpenWhileLocalClientsAreServed) {
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < 4096 && files.rlim_max >= 4096) {
    files.rlim_cur = 4096;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  std::vector<io::client> held;
  held.reserve(1000);
  for (int i = 0; i < 1000; ++i) {
    io::client c;
    ASSERT_TRUE(c.connect(address(), {certs_.ca_cert}, alice_token)) << i << ": " << c.last_error();
    held.push_back(std::move(c));
  }
  io::client local;
  ASSERT_TRUE(local.connect(daemon_->socket_path()));
  const auto started = std::chrono::steady_clock::now();
  const json status = ok(local, {{"op", "status"}});
  EXPECT_EQ(status["remote"]["connections"], 1000);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  ok(local, {{"op", "register"}, {"run", "local-run"}});
  // Every held connection still answers.
  for (std::size_t i = 0; i < held.size(); i += 97) ok(held[i], {{"op", "hello"}});
}

TEST(RemoteConfig, ListenWithoutCertificateOrTokensIsRefusedNamingTheKey) {
  test::temp_dir dir;
  const std::string config = dir.file("c.yaml");
  std::ofstream(config) << "remote: {listen: \"127.0.0.1:7443\"}\n";
  auto r = test::run_command({SWEEPD_BINARY, "--check-config", config}, {}, 20s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err + r.out, HasSubstr("remote.cert_file: must be set when remote.listen is set"));
  EXPECT_THAT(r.err + r.out, HasSubstr("remote.tokens_file"));
  std::ofstream(config) << "remote: {listen: \"127.0.0.1:7443\", cert_file: " << dir.file("no.crt")
                        << ", key_file: " << dir.file("no.key")
                        << ", tokens_file: " << dir.file("tokens")
                        << "}\nsocket: {path: " << dir.file("s.sock")
                        << "}\nstate: {path: " << dir.file("state.db") << "}\n";
  r = test::run_command({SWEEPD_BINARY, "--config", config}, {}, 20s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("remote.cert_file"));
}

}  // namespace
}  // namespace sweepd
