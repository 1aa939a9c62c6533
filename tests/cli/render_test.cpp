// sweepd's replies as sweepctl shows them: the usual replies render as expected, and hostile ones
// (missing fields, wrong types, control characters) render without throwing.

#include "cli/render.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sweepd::cli {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(Render, RunState) {
  EXPECT_EQ(render_run_state({{"ok", true}, {"run", "r1"}, {"state", "running"}}), "r1: running\n");
  EXPECT_EQ(render_run_state({{"ok", true}}), "-: -\n");
}

TEST(Render, Hello) {
  EXPECT_EQ(render_hello({{"server", "sweepd"}, {"version", "0.1.0"}, {"protocol", 1}}, "/s.sock"),
            "sweepd 0.1.0, protocol 1, at /s.sock\n");
}

TEST(Render, Status) {
  const json reply = {{"ok", true},
                      {"version", "0.1.0"},
                      {"protocol", 1},
                      {"uptime_s", 42},
                      {"runs", {{"running", 3}, {"initializing", 1}, {"zombie", 2}}},
                      {"connections", 2},
                      {"wandb", {{"mode", "online"}, {"pending", 0}, {"last_error", "HTTP 503"}}}};
  // Known states in state-machine order, then the ones sweepctl does not know.
  EXPECT_EQ(render_status(reply, "/run/sweepd/sweepd.sock"),
            "sweepd:           0.1.0 (protocol 1)\n"
            "socket:           /run/sweepd/sweepd.sock\n"
            "uptime:           42s\n"
            "runs:             6 total: initializing 1, running 3, zombie 2\n"
            "connections:      2\n"
            "wandb:            online, pending 0\n"
            "wandb last error: HTTP 503\n");
}

TEST(Render, List) {
  const json reply = {{"ok", true},
                      {"runs",
                       {{{"run", "r1"},
                         {"sweep", "s1"},
                         {"state", "success"},
                         {"reason", "completed"},
                         {"runtime_s", 125},
                         {"objective", 0.934512345},
                         {"updated_at", "2026-11-28T21:05:53.120Z"}},
                        {{"run", "r2"}, {"sweep", ""}, {"state", "running"}, {"age_s", 4}}}},
                      {"truncated", true},
                      {"next", "r1:9:r2"}};
  const std::string text = render_list(reply);
  EXPECT_THAT(text, HasSubstr("RUN  SWEEP  STATE    REASON     AGE/RUNTIME  OBJECTIVE  UPDATED"));
  EXPECT_THAT(text, HasSubstr("r1   s1     success  completed        2m05s   0.934512  "
                              "2026-11-28 21:05:53Z\n"));
  EXPECT_THAT(text, HasSubstr("r2   -      running  -                 4.0s          -  -\n"));
  EXPECT_THAT(text, HasSubstr("sweepctl list --after r1:9:r2 shows the next ones"));
  EXPECT_EQ(render_list({{"ok", true}, {"runs", json::array()}}), "no runs\n");
}

TEST(Render, Show) {
  const json reply = {{"ok", true},
                      {"run",
                       {{"run", "r1"},
                        {"sweep", "s1"},
                        {"entity", "acme"},
                        {"project", ""},
                        {"state", "failed"},
                        {"reason", "reported"},
                        {"error", "CUDA out of memory"},
                        {"heartbeat_timeout_s", 0},
                        {"max_runtime_s", 3600},
                        {"watch_peer", true},
                        {"peer_pid", 4242},
                        {"suggestion", {{"lr", 0.01}}},
                        {"transitions",
                         {{{"at", "2026-11-28T21:05:53.120Z"},
                           {"from", "running"},
                           {"to", "failed"},
                           {"reason", "reported"},
                           {"error", "CUDA out of memory"}}}}}}};
  const std::string text = render_show(reply);
  EXPECT_THAT(text, HasSubstr("entity/project:    acme/-\n"));
  EXPECT_THAT(text, HasSubstr("state:             failed (reported)\n"));
  EXPECT_THAT(text, HasSubstr("heartbeat timeout: off\n"));
  EXPECT_THAT(text, HasSubstr("max runtime:       1h00m\n"));
  EXPECT_THAT(text, HasSubstr("watch peer:        yes, pid 4242\n"));
  EXPECT_THAT(text, HasSubstr("suggestion:        {\"lr\":0.01}\n"));
  EXPECT_THAT(text, HasSubstr("\ntransitions:\nAT"));
  EXPECT_THAT(text, HasSubstr("2026-11-28 21:05:53Z  running  failed  reported"));
}

TEST(Render, Observations) {
  const json reply = {{"ok", true},
                      {"observations",
                       {{{"run_id", "r1"},
                         {"state", "timeout"},
                         {"late", true},
                         {"objective", nullptr},
                         {"cost", 12.5},
                         {"is_failure", true}}}}};
  const std::string text = render_observations(reply);
  EXPECT_THAT(text, HasSubstr("r1   timeout (late)          -  12.5  yes\n"));
  EXPECT_EQ(render_observations({{"ok", true}}), "no observations\n");
}

TEST(Render, ControlCharactersFromSweepdAreNotPassedToTheTerminal) {
  const json reply = {{"ok", true},
                      {"run", "r1\x1b[2J"},
                      {"state", "run\nning"},
                      {"runs", {{{"run", "a\tb"}, {"state", "x\x07"}}}}};
  for (const std::string& text : {render_run_state(reply), render_list(reply)}) {
    EXPECT_THAT(text, Not(HasSubstr("\x1b"))) << text;
    EXPECT_THAT(text, Not(HasSubstr("\x07"))) << text;
    EXPECT_THAT(text, Not(HasSubstr("\t"))) << text;
  }
}

/// Replies of every shape a hostile or confused sweepd could send.
std::vector<json> hostile_replies() {
  const json odd_values[] = {
      nullptr, 1, -1e308, "text", true, json::array({1, "x"}), json::object({{"k", {1}}})};
  std::vector<json> replies = {nullptr, 1, "text", json::array({1, 2}), json::object()};
  const char* keys[] = {"run",        "runs",      "state",       "observations", "wandb",
                        "reconcile",  "counts",    "transitions", "truncated",    "next",
                        "version",    "uptime_s",  "protocol",    "apply",        "sweep",
                        "runs_total", "objective", "suggestion"};
  for (const json& v : odd_values) {
    json all = json::object();
    for (const char* key : keys) all[key] = v;
    replies.push_back(all);
    // Entries whose every field is the odd value.
    json entry = json::object();
    for (const char* key : {"run", "run_id", "state", "runtime_s", "age_s", "objective", "cost",
                            "late", "is_failure", "watch_peer", "peer_pid", "wandb", "transitions",
                            "updated_at", "action", "reason", "heartbeat_at"}) {
      entry[key] = v;
    }
    replies.push_back({{"runs", {entry}},
                       {"observations", {entry}},
                       {"run", entry},
                       {"counts", entry},
                       {"wandb", entry},
                       {"reconcile", entry}});
  }
  return replies;
}

TEST(Render, HostileRepliesRenderWithoutThrowing) {
  for (const json& reply : hostile_replies()) {
    SCOPED_TRACE(dump_json(reply));
    EXPECT_NO_THROW({
      render_run_state(reply);
      render_hello(reply, "/s");
      render_status(reply, "/s");
      render_reconcile(reply);
      render_list(reply);
      render_show(reply);
      render_resync(reply);
      render_observations(reply);
      shown_error_of(reply, 300);
    });
  }
}

TEST(ProtocolReply, TakesOnlyObjectsWithABooleanOk) {
  std::string why;
  ASSERT_TRUE(protocol_reply(R"({"ok":false,"error":{"code":"busy"}})", "/s", why).has_value());
  const std::vector<std::string> lines = {"",
                                          "[]",
                                          "null",
                                          R"({"ok":"yes"})",
                                          R"({"state":"running"})",
                                          "{\"ok\":true",
                                          std::string(100000, '[') + std::string(100000, ']')};
  for (const std::string& line : lines) {
    why.clear();
    EXPECT_FALSE(protocol_reply(line, "/s", why).has_value()) << line.substr(0, 40);
    EXPECT_THAT(why, HasSubstr("sweepd at /s sent a reply")) << line.substr(0, 40);
  }
}

TEST(ShownError, StandsInForMissingPartsAndBoundsTheMessage) {
  const shown_error none = shown_error_of({{"ok", false}}, 0);
  EXPECT_EQ(none.code, "error");
  EXPECT_EQ(none.message, "sweepd refused the request without saying why");
  const shown_error e = shown_error_of(
      {{"ok", false}, {"error", {{"code", "busy"}, {"message", std::string(1000, 'm')}}}}, 20);
  EXPECT_EQ(e.code, "busy");
  EXPECT_LE(e.message.size(), 20u + 3);  // 19 characters and a 3-byte "…"
}

}  // namespace
}  // namespace sweepd::cli
