#include "core/service.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "core/core_test_support.hpp"

namespace sweepd::core {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::vector<std::string> ids_of(const json& runs, const char* key) {
  std::vector<std::string> ids;
  for (const json& r : runs) ids.push_back(r.at(key).get<std::string>());
  return ids;
}

class ServiceTest : public ::testing::Test {
 protected:
  static supervisor_limits defaults() {
    supervisor_limits l;
    l.default_entity = "team";
    l.default_project = "proj";
    return l;
  }

  /// Sends one line and returns the parsed reply, checking it is one JSON line with "ok".
  json call(const std::string& line, mono_clock::duration when, const caller& who = alice) {
    last = svc.handle(line, who, at(when));
    // As the daemon does once the change is stored (the journal is not part of these tests).
    if (apply_changes && last.result.change) sup.apply(*last.result.change);
    EXPECT_FALSE(last.reply.empty()) << line;
    EXPECT_EQ(last.reply.find('\n'), last.reply.size() - 1) << last.reply;
    json j = json::parse(last.reply, nullptr, false);
    EXPECT_TRUE(j.is_object()) << last.reply;
    if (!j.is_object()) return json::object();
    EXPECT_TRUE(j.contains("ok") && j["ok"].is_boolean()) << last.reply;
    return j;
  }

  /// Sends a line that must succeed and returns the reply.
  json ok(const std::string& line, mono_clock::duration when, const caller& who = alice) {
    json j = call(line, when, who);
    EXPECT_EQ(j.value("ok", false), true) << line << " -> " << last.reply;
    return j;
  }

  /// Sends a line that must fail with `code`; checks nothing was changed or acknowledged.
  json refused(const std::string& line, mono_clock::duration when, const std::string& code,
               const caller& who = alice) {
    json j = call(line, when, who);
    EXPECT_EQ(j.value("ok", true), false) << line << " -> " << last.reply;
    EXPECT_EQ(j["error"]["code"], code) << last.reply;
    EXPECT_TRUE(j["error"]["message"].is_string()) << last.reply;
    EXPECT_FALSE(last.result.change.has_value()) << line;
    return j;
  }

  void lifecycle(const std::string& id, const std::string& sweep, const std::string& ending,
                 mono_clock::duration registered) {
    ok(R"({"op":"register","run":")" + id + R"(","sweep":")" + sweep +
           R"(","suggestion":{"lr":0.1,"run":")" + id + R"("}})",
       registered);
    ok(R"({"op":"start","run":")" + id + "\"}", registered + 1s);
    if (!ending.empty()) ok(ending, registered + 10s);
  }

  /// Follows "next" from a first page of `request` to the last one; the ids under `key` of every
  /// page, in order. Every page but the last says truncated and gives a fresh cursor.
  std::vector<std::string> ids_of_all_pages(json request, const char* key, const char* id_key,
                                            mono_clock::duration when,
                                            std::size_t* pages = nullptr) {
    std::vector<std::string> ids;
    std::size_t count = 0;
    for (std::optional<std::string> cursor;;) {
      if (cursor) request["after"] = *cursor;
      const json page = ok(request.dump(), when);
      ++count;
      for (const std::string& id : ids_of(page[key], id_key)) ids.push_back(id);
      EXPECT_TRUE(page["truncated"].is_boolean()) << page.dump();
      if (page["truncated"] != true) {
        EXPECT_FALSE(page.contains("next")) << page.dump();
        break;
      }
      EXPECT_TRUE(page["next"].is_string()) << page.dump();
      if (!page["next"].is_string() || page["next"] == cursor || count > 1000) {
        ADD_FAILURE() << "paging does not move on: " << page.dump();
        break;
      }
      cursor = page["next"].get<std::string>();
    }
    if (pages != nullptr) *pages = count;
    return ids;
  }

  bool apply_changes = true;
  static constexpr caller alice{1000, 4242, false};
  static constexpr caller bob{1001, 5353, false};
  static constexpr caller admin{0, 1, true};

  supervisor sup{defaults()};
  daemon_stats stats;
  service svc{sup, "1.2.3", at(5s).mono, [this] { return stats; },
              [](const run_record& r) {
                return json{{"status", "pending"}, {"of", r.id}};
              }};
  handled last;
};

TEST_F(ServiceTest, Hello) {
  json j = ok(R"({"op":"hello"})", 35s);
  EXPECT_EQ(j, json::parse(R"({"ok":true,"server":"sweepd","version":"1.2.3","protocol":1})"));
  EXPECT_FALSE(last.result.change.has_value());
}

TEST_F(ServiceTest, RegisterStartHeartbeatComplete) {
  json j = ok(R"({"op":"register","run":"ab12cd34","sweep":"s1","entity":"e","project":"p",)"
              R"("suggestion":{"lr":0.01},"watch_peer":true,"heartbeat_timeout_s":600,)"
              R"("max_runtime_s":86400})",
              35s);
  EXPECT_EQ(j, json::parse(R"({"ok":true,"run":"ab12cd34","state":"initializing"})"));
  ASSERT_TRUE(last.result.change);
  EXPECT_EQ(last.result.change->reason, transition_reason::registered);
  EXPECT_EQ(sup.find("ab12cd34")->peer_pid, 4242);
  EXPECT_EQ(sup.next_deadline(), at(635s).mono);

  j = ok(R"({"op":"start","run":"ab12cd34"})", 40s);
  EXPECT_EQ(j, json::parse(R"({"ok":true,"run":"ab12cd34","state":"running"})"));
  ASSERT_TRUE(last.result.change);
  EXPECT_EQ(last.result.change->to, run_state::running);

  j = ok(R"({"op":"heartbeat","run":"ab12cd34","progress":1200,"timeout_s":900})", 50s);
  EXPECT_EQ(j, json::parse(R"({"ok":true,"run":"ab12cd34","state":"running"})"));
  EXPECT_FALSE(last.result.change.has_value());
  EXPECT_EQ(sup.next_deadline(), at(950s).mono);

  j = ok(R"({"op":"complete","run":"ab12cd34","objective":0.93,"cost":3600.5})", 3635s);
  EXPECT_EQ(j, json::parse(R"({"ok":true,"run":"ab12cd34","state":"success"})"));
  ASSERT_TRUE(last.result.change);
  EXPECT_EQ(last.result.change->from, run_state::running);
  EXPECT_EQ(last.result.change->to, run_state::success);
  EXPECT_EQ(last.result.change->objective, 0.93);
  EXPECT_EQ(last.result.change->cost, 3600.5);
  EXPECT_EQ(last.result.change->runtime_s, 3600.0);
  EXPECT_EQ(last.result.run, sup.find("ab12cd34"));
  EXPECT_FALSE(sup.next_deadline().has_value());
}

TEST_F(ServiceTest, Fail) {
  ok(R"({"op":"register","run":"r1"})", 0s);
  json j = ok(R"({"op":"fail","run":"r1","error":"CUDA out of memory"})", 20s);
  EXPECT_EQ(j, json::parse(R"({"ok":true,"run":"r1","state":"failed"})"));
  ASSERT_TRUE(last.result.change);
  EXPECT_EQ(last.result.change->from, run_state::initializing);
  EXPECT_EQ(last.result.change->error, "CUDA out of memory");
  EXPECT_EQ(last.result.change->cost, 20.0);
  // start and heartbeat on the failed run answer with its state.
  EXPECT_EQ(ok(R"({"op":"start","run":"r1"})", 21s)["state"], "failed");
  EXPECT_EQ(ok(R"({"op":"heartbeat","run":"r1","progress":3})", 22s)["state"], "failed");
  EXPECT_FALSE(last.result.change.has_value());
}

TEST_F(ServiceTest, StatusReportsCountsUptimeAndDaemonStats) {
  stats.connections = 3;
  stats.wandb = {{"mode", "online"}, {"pending", 2}, {"dead", 1}};
  lifecycle("a", "s1", "", 0s);
  lifecycle("b", "s1", R"({"op":"complete","run":"b","objective":1})", 0s);
  lifecycle("c", "s1", R"({"op":"fail","run":"c","error":"x"})", 0s);
  ok(R"({"op":"register","run":"d"})", 0s);
  ok(R"({"op":"register","run":"e"})", 0s);
  sup.process_exited("e", at(30s));
  ok(R"({"op":"register","run":"f"})", 100s);
  ok(R"({"op":"register","run":"g"})", 100s);
  ASSERT_EQ(sup.expire(at(305s)).size(), 2u);  // a (seen at 1 s) and d (registered at 0 s)

  json j = ok(R"({"op":"status"})", 365s);
  EXPECT_EQ(j["version"], "1.2.3");
  EXPECT_EQ(j["protocol"], 1);
  EXPECT_DOUBLE_EQ(j["uptime_s"].get<double>(), 360.0);
  EXPECT_EQ(j["runs"], json::parse(R"({"initializing":2,"running":0,"success":1,"failed":1,)"
                                   R"("crashed":1,"timeout":2})"));
  EXPECT_EQ(j["runs_total"], 7);
  EXPECT_EQ(j["connections"], 3);
  EXPECT_EQ(j["wandb"], json::parse(R"({"mode":"online","pending":2,"dead":1})"));
  EXPECT_FALSE(last.result.change.has_value());

  // The stats are asked for on each status, not cached.
  stats.wandb["pending"] = 0;
  EXPECT_EQ(ok(R"({"op":"status"})", 366s)["wandb"]["pending"], 0);
}

TEST_F(ServiceTest, ShowReturnsTheFullRecordWithTransitions) {
  ok(R"({"op":"register","run":"r1","sweep":"s1","suggestion":{"lr":0.5},"watch_peer":true})", 35s);
  ok(R"({"op":"start","run":"r1"})", 36s);
  ok(R"({"op":"heartbeat","run":"r1","progress":42})", 40s);
  ok(R"({"op":"complete","run":"r1","objective":0.25,"cost":7})", 45s);

  // Its owner reads it all (others: ShowWithholdsTheSuggestionAndErrorFromOtherUids).
  json j = ok(R"({"op":"show","run":"r1"})", 50s, alice);
  EXPECT_FALSE(last.result.change.has_value());
  json& r = j["run"];
  EXPECT_EQ(r["run"], "r1");
  EXPECT_EQ(r["sweep"], "s1");
  EXPECT_EQ(r["entity"], "team");
  EXPECT_EQ(r["project"], "proj");
  EXPECT_EQ(r["suggestion"], json::parse(R"({"lr":0.5})"));
  EXPECT_EQ(r["state"], "success");
  EXPECT_EQ(r["reason"], "completed");
  EXPECT_EQ(r["owner_uid"], 1000);
  EXPECT_EQ(r["watch_peer"], true);
  EXPECT_EQ(r["peer_pid"], 4242);
  EXPECT_EQ(r["objective"], 0.25);
  EXPECT_EQ(r["cost"], 7.0);
  EXPECT_EQ(r["progress"], 42.0);
  EXPECT_EQ(r["runtime_s"], 10.0);
  EXPECT_EQ(r["heartbeat_timeout_s"], 300.0);
  EXPECT_EQ(r["max_runtime_s"], 0.0);
  EXPECT_EQ(r["registered_at"], "2026-11-28T21:07:15.000Z");
  EXPECT_EQ(r["updated_at"], "2026-11-28T21:07:25.000Z");
  EXPECT_EQ(r["finished_at"], "2026-11-28T21:07:25.000Z");
  EXPECT_FALSE(r.contains("deadline_in_s"));
  ASSERT_TRUE(r["transitions"].is_array());
  ASSERT_EQ(r["transitions"].size(), 3u);
  EXPECT_EQ(r["transitions"][0], json::parse(R"({"run":"r1","from":null,"to":"initializing",)"
                                             R"("reason":"registered",)"
                                             R"("at":"2026-11-28T21:07:15.000Z"})"));
  EXPECT_EQ(r["transitions"][1]["from"], "initializing");
  EXPECT_EQ(r["transitions"][1]["to"], "running");
  EXPECT_EQ(r["transitions"][1]["reason"], "started");
  EXPECT_EQ(r["transitions"][2],
            json::parse(R"({"run":"r1","from":"running","to":"success","reason":"completed",)"
                        R"("at":"2026-11-28T21:07:25.000Z","runtime_s":10.0,"objective":0.25,)"
                        R"("cost":7.0})"));

  refused(R"({"op":"show","run":"nope"})", 50s, "unknown_run");
  EXPECT_THAT(last.reply, HasSubstr("nope"));
}

TEST_F(ServiceTest, ShowOfALiveRunHasItsDeadlineAndNoFinish) {
  ok(R"({"op":"register","run":"r1","heartbeat_timeout_s":60})", 0s);
  json j = ok(R"({"op":"show","run":"r1"})", 15s);
  EXPECT_DOUBLE_EQ(j["run"]["deadline_in_s"].get<double>(), 45.0);
  EXPECT_DOUBLE_EQ(j["run"]["age_s"].get<double>(), 15.0);
  EXPECT_DOUBLE_EQ(j["run"]["last_seen_s"].get<double>(), 15.0);
  EXPECT_FALSE(j["run"].contains("finished_at"));
  EXPECT_FALSE(j["run"].contains("runtime_s"));
  EXPECT_FALSE(j["run"].contains("peer_pid"));

  // Time out for silence, then revive: the run is live again, not finished.
  ASSERT_EQ(sup.expire(at(60s)).size(), 1u);
  EXPECT_EQ(ok(R"({"op":"show","run":"r1"})", 61s)["run"]["finished_at"],
            "2026-11-28T21:07:40.000Z");
  EXPECT_EQ(ok(R"({"op":"heartbeat","run":"r1"})", 70s)["state"], "running");
  ASSERT_TRUE(last.result.change);
  EXPECT_EQ(last.result.change->reason, transition_reason::revived);
  json revived = ok(R"({"op":"show","run":"r1"})", 71s)["run"];
  EXPECT_EQ(revived["state"], "running");
  EXPECT_EQ(revived["reason"], "revived");
  EXPECT_FALSE(revived.contains("finished_at")) << revived.dump();
  EXPECT_FALSE(revived.contains("runtime_s")) << revived.dump();
  EXPECT_EQ(revived["transitions"].size(), 3u);
}

TEST_F(ServiceTest, ListFiltersBySweepAndState) {
  lifecycle("a1", "s1", "", 0s);
  lifecycle("a2", "s1", R"({"op":"complete","run":"a2","objective":1})", 1s);
  lifecycle("a3", "s1", "", 2s);
  lifecycle("b1", "s2", "", 3s);
  ok(R"({"op":"register","run":"n1"})", 4s);

  json j = ok(R"({"op":"list"})", 20s);
  EXPECT_EQ(ids_of(j["runs"], "run"), (std::vector<std::string>{"a1", "a2", "a3", "b1", "n1"}));
  EXPECT_EQ(j["truncated"], false);

  j = ok(R"({"op":"list","sweep":"s1"})", 20s);
  EXPECT_EQ(ids_of(j["runs"], "run"), (std::vector<std::string>{"a1", "a2", "a3"}));
  j = ok(R"({"op":"list","state":"running"})", 20s);
  EXPECT_EQ(ids_of(j["runs"], "run"), (std::vector<std::string>{"a1", "a3", "b1"}));
  j = ok(R"({"op":"list","sweep":"s1","state":"success"})", 20s);
  ASSERT_EQ(j["runs"].size(), 1u);
  json& a2 = j["runs"][0];
  EXPECT_EQ(a2["run"], "a2");
  EXPECT_EQ(a2["sweep"], "s1");
  EXPECT_EQ(a2["state"], "success");
  EXPECT_EQ(a2["objective"], 1.0);
  EXPECT_EQ(a2["runtime_s"], 10.0);
  EXPECT_FALSE(a2.contains("age_s"));
  j = ok(R"({"op":"list","sweep":"s2","state":"success"})", 20s);
  EXPECT_TRUE(j["runs"].empty());
  EXPECT_EQ(j["truncated"], false);
  j = ok(R"({"op":"list","sweep":"nope"})", 20s);
  EXPECT_TRUE(j["runs"].is_array());
  EXPECT_TRUE(j["runs"].empty());

  // A live run's line says how long ago it was seen.
  j = ok(R"({"op":"list","state":"initializing"})", 20s);
  ASSERT_EQ(j["runs"].size(), 1u);
  EXPECT_DOUBLE_EQ(j["runs"][0]["last_seen_s"].get<double>(), 16.0);
  EXPECT_FALSE(last.result.change.has_value());
}

TEST_F(ServiceTest, ListLimitSetsTheTruncatedFlag) {
  for (int i = 0; i < 5; ++i) {
    ok(R"({"op":"register","run":"r)" + std::to_string(i) + R"(","sweep":"s"})",
       std::chrono::seconds(10 - i));  // registered in reverse order of their names
  }
  json j = ok(R"({"op":"list","limit":2})", 20s);
  EXPECT_EQ(ids_of(j["runs"], "run"), (std::vector<std::string>{"r4", "r3"}));
  EXPECT_EQ(j["truncated"], true);
  j = ok(R"({"op":"list","limit":5})", 20s);
  EXPECT_EQ(j["runs"].size(), 5u);
  EXPECT_EQ(j["truncated"], false);
  j = ok(R"({"op":"list","sweep":"s","limit":4})", 20s);
  EXPECT_EQ(j["runs"].size(), 4u);
  EXPECT_EQ(j["truncated"], true);
}

TEST_F(ServiceTest, ListPagesFollowTheCursorOldestFirst) {
  // Registered in the reverse order of their names; two share a millisecond (then: by id).
  for (int i = 0; i < 7; ++i) {
    ok(R"({"op":"register","run":"r)" + std::to_string(i) + R"(","sweep":"s"})",
       std::chrono::seconds(10 - i));
  }
  ok(R"({"op":"register","run":"q0","sweep":"s"})", 4s + 300us);  // same ms as r6 (4 s), "q0"<"r6"
  const std::vector<std::string> oldest_first{"q0", "r6", "r5", "r4", "r3", "r2", "r1", "r0"};

  json page = ok(R"({"op":"list","limit":3})", 20s);
  EXPECT_EQ(ids_of(page["runs"], "run"), (std::vector<std::string>{"q0", "r6", "r5"}));
  EXPECT_EQ(page["truncated"], true);
  ASSERT_TRUE(page["next"].is_string()) << page.dump();

  std::size_t pages = 0;
  EXPECT_EQ(ids_of_all_pages(json{{"op", "list"}, {"limit", 3}}, "runs", "run", 20s, &pages),
            oldest_first);
  EXPECT_EQ(pages, 3u);
  EXPECT_EQ(ids_of_all_pages(json{{"op", "list"}, {"limit", 1}}, "runs", "run", 20s, &pages),
            oldest_first);
  EXPECT_EQ(pages, 8u);
  // Exactly a page's worth: the last page is not truncated and has no cursor.
  page = ok(R"({"op":"list","limit":8})", 20s);
  EXPECT_EQ(ids_of(page["runs"], "run"), oldest_first);
  EXPECT_EQ(page["truncated"], false);
  EXPECT_FALSE(page.contains("next"));
  // Filters apply to every page; the cursor is a position in the order, valid with them too.
  ok(R"({"op":"start","run":"r5"})", 20s);
  ok(R"({"op":"start","run":"r1"})", 20s);
  EXPECT_EQ(ids_of_all_pages(json{{"op", "list"}, {"state", "running"}, {"limit", 1}}, "runs",
                             "run", 20s),
            (std::vector<std::string>{"r5", "r1"}));
  EXPECT_FALSE(last.result.change.has_value());
}

TEST_F(ServiceTest, ListCursorStaysValidWhileRunsComeAndGo) {
  for (int i = 0; i < 4; ++i) {
    ok(R"({"op":"register","run":"a)" + std::to_string(i) + "\"}", std::chrono::seconds(i));
  }
  json page = ok(R"({"op":"list","limit":2})", 10s);
  ASSERT_EQ(ids_of(page["runs"], "run"), (std::vector<std::string>{"a0", "a1"}));
  const std::string next = page["next"];
  // Between two pages: a run newer than every other arrives, the cursor's own run is gone.
  ok(R"({"op":"register","run":"late"})", 11s);
  ok(R"({"op":"register","run":"a00"})", 0s + 500ms);  // between a0 and a1: already paged past
  sup.fail({"a1", "x"}, alice, at(12s));
  ASSERT_EQ(sup.prune(at(13s).wall + 1s), (std::vector<std::string>{"a1"}));
  page = ok(json{{"op", "list"}, {"after", next}}.dump(), 14s);
  EXPECT_EQ(ids_of(page["runs"], "run"), (std::vector<std::string>{"a2", "a3", "late"}));
  EXPECT_EQ(page["truncated"], false);
}

TEST_F(ServiceTest, ObservationsPageInTheOrderRunsFinished) {
  // Registered a0..a5 in order, finished in the reverse order; one live run is never listed.
  for (int i = 0; i < 6; ++i) {
    const std::string id = "a" + std::to_string(i);
    lifecycle(id, "s1", "", std::chrono::seconds(i));
    ok(R"({"op":"complete","run":")" + id + R"(","objective":)" + std::to_string(i) + "}",
       std::chrono::seconds(100 - i));
  }
  lifecycle("live", "s1", "", 50s);
  lifecycle("other", "s2", R"({"op":"complete","run":"other"})", 0s);
  const std::vector<std::string> finish_order{"a5", "a4", "a3", "a2", "a1", "a0"};

  json page = ok(R"({"op":"observations","sweep":"s1"})", 200s);
  EXPECT_EQ(ids_of(page["observations"], "run_id"), finish_order);
  EXPECT_EQ(page["truncated"], false);
  EXPECT_FALSE(page.contains("next"));

  page = ok(R"({"op":"observations","sweep":"s1","limit":4})", 200s);
  EXPECT_EQ(ids_of(page["observations"], "run_id"),
            (std::vector<std::string>{"a5", "a4", "a3", "a2"}));
  EXPECT_EQ(page["truncated"], true);
  std::size_t pages = 0;
  EXPECT_EQ(ids_of_all_pages(json{{"op", "observations"}, {"sweep", "s1"}, {"limit", 4}},
                             "observations", "run_id", 200s, &pages),
            finish_order);
  EXPECT_EQ(pages, 2u);

  // A page that holds exactly what is left is the last: no cursor.
  page = ok(R"({"op":"observations","sweep":"s1","limit":6})", 200s);
  EXPECT_EQ(page["truncated"], false);
  EXPECT_FALSE(page.contains("next"));
  // A cursor stays valid while runs finish: what finishes later comes after what was there, and a
  // late report that corrects a timeout finishes the run again, later.
  page = ok(R"({"op":"observations","sweep":"s1","limit":5})", 200s);
  const std::string after_a1 = page["next"];
  ASSERT_EQ(sup.expire(at(351s)).size(), 1u);  // live, seen last at 51 s
  page = ok(json{{"op", "observations"}, {"sweep", "s1"}, {"after", after_a1}}.dump(), 352s);
  EXPECT_EQ(ids_of(page["observations"], "run_id"), (std::vector<std::string>{"a0", "live"}));
  ok(R"({"op":"complete","run":"live","objective":9})", 360s);
  page = ok(json{{"op", "observations"}, {"sweep", "s1"}, {"after", after_a1}}.dump(), 400s);
  EXPECT_EQ(ids_of(page["observations"], "run_id"), (std::vector<std::string>{"a0", "live"}));
  EXPECT_EQ(page["observations"][1]["late"], true);
  EXPECT_EQ(page["observations"][1]["finished_at"], format_utc(at(360s).wall));
}

TEST_F(ServiceTest, PagesStopBeforeTheReplyByteCap) {
  constexpr std::size_t cap = std::size_t{16} * 1024;
  svc.set_max_reply_bytes(cap);
  const std::string filler(3000, 'x');
  for (int i = 0; i < 20; ++i) {
    const std::string id = "r" + std::to_string(100 + i);
    ok(json{{"op", "register"}, {"run", id}, {"sweep", "s"}, {"suggestion", {{"pad", filler}}}}
           .dump(),
       std::chrono::seconds(i));
    ok(R"({"op":"fail","run":")" + id + R"(","error":"e"})", std::chrono::seconds(100 + i));
  }
  json page = ok(R"({"op":"observations"})", 200s);
  EXPECT_LE(last.reply.size(), cap);
  EXPECT_EQ(page["truncated"], true);
  const std::size_t per_page = page["observations"].size();
  EXPECT_GE(per_page, 4u);  // ~3.1 KB each
  EXPECT_LT(per_page, 6u);
  std::vector<std::string> all;
  all.reserve(20);
  for (int i = 0; i < 20; ++i) all.push_back("r" + std::to_string(100 + i));
  EXPECT_EQ(ids_of_all_pages(json{{"op", "observations"}}, "observations", "run_id", 200s), all);
  // `list` lines are small but capped the same way.
  svc.set_max_reply_bytes(1024);
  std::size_t pages = 0;
  EXPECT_EQ(ids_of_all_pages(json{{"op", "list"}, {"limit", 1000}}, "runs", "run", 200s, &pages),
            all);
  EXPECT_GT(pages, 5u);
  // One entry larger than the cap still comes, alone: paging always moves on.
  svc.set_max_reply_bytes(1000);
  page = ok(R"({"op":"observations"})", 200s);
  EXPECT_EQ(page["observations"].size(), 1u);
  EXPECT_EQ(page["truncated"], true);
  EXPECT_EQ(ids_of_all_pages(json{{"op", "observations"}}, "observations", "run_id", 200s, &pages),
            all);
  EXPECT_EQ(pages, 20u);
}

TEST_F(ServiceTest, ObservationsReplyStaysUnderOneMebibyte) {
  // 20 runs with 60 KB suggestions are ~1.2 MB of observations: more than one reply may carry.
  const std::string filler(std::size_t{60} * 1000, 'x');
  for (int i = 0; i < 20; ++i) {
    const std::string id = "big" + std::to_string(i);
    ok(json{{"op", "register"}, {"run", id}, {"suggestion", {{"pad", filler}}}}.dump(),
       std::chrono::seconds(i));
    ok(R"({"op":"complete","run":")" + id + R"(","objective":1})", std::chrono::seconds(100 + i));
  }
  json page = ok(R"({"op":"observations"})", 300s);
  EXPECT_LE(last.reply.size(), std::size_t{1} << 20);
  EXPECT_EQ(page["truncated"], true);
  EXPECT_GT(page["observations"].size(), 15u);
  std::size_t pages = 0;
  EXPECT_EQ(
      ids_of_all_pages(json{{"op", "observations"}}, "observations", "run_id", 300s, &pages).size(),
      20u);
  EXPECT_EQ(pages, 2u);
}

TEST_F(ServiceTest, ObservationsListTerminalRunsOfTheSweep) {
  lifecycle("ok1", "s1", R"({"op":"complete","run":"ok1","objective":0.9,"cost":120})", 0s);
  lifecycle("ok2", "s1", R"({"op":"complete","run":"ok2"})", 1s);
  lifecycle("bad", "s1", R"({"op":"fail","run":"bad","error":"NaN loss"})", 2s);
  lifecycle("dead", "s1", "", 3s);
  lifecycle("silent", "s1", "", 4s);
  lifecycle("live", "s1", "", 200s);
  lifecycle("zero", "s1", R"({"op":"complete","run":"zero","objective":0.1,"cost":0})", 5s);
  lifecycle("other", "s2", R"({"op":"complete","run":"other","objective":0.5})", 6s);
  sup.process_exited("dead", at(50s));
  ASSERT_EQ(sup.expire(at(305s)).size(), 1u);  // silent, seen last at 5 s

  json j = ok(R"({"op":"observations","sweep":"s1"})", 400s);
  EXPECT_FALSE(last.result.change.has_value());
  json& obs = j["observations"];
  ASSERT_TRUE(obs.is_array());
  // In the order they finished: 10, 11, 12, 15, 50 and 305 s.
  EXPECT_EQ(ids_of(obs, "run_id"),
            (std::vector<std::string>{"ok1", "ok2", "bad", "zero", "dead", "silent"}));
  std::map<std::string, json> by_id;
  for (json& o : obs) {
    by_id[o["run_id"].get<std::string>()] = o;
    EXPECT_TRUE(o["cost"].is_number()) << o.dump();
    EXPECT_GT(o["cost"].get<double>(), 0.0) << o.dump();
    EXPECT_EQ(o["suggestion"]["run"], o["run_id"]) << o.dump();
    EXPECT_EQ(o["suggestion"]["lr"], 0.1) << o.dump();
    EXPECT_TRUE(o["is_failure"].is_boolean());
  }
  EXPECT_EQ(by_id["ok1"], json::parse(R"({"run_id":"ok1","suggestion":{"lr":0.1,"run":"ok1"},)"
                                      R"("objective":0.9,"cost":120.0,"is_failure":false,)"
                                      R"("state":"success","finished_at":")" +
                                      format_utc(at(10s).wall) + R"("})"));
  EXPECT_EQ(by_id["ok2"]["objective"], nullptr);
  EXPECT_EQ(by_id["ok2"]["cost"], 10.0);  // runtime when no cost was given
  EXPECT_EQ(by_id["ok2"]["is_failure"], false);
  EXPECT_EQ(by_id["zero"]["cost"], 0.001);
  for (const char* id : {"bad", "dead", "silent"}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(by_id[id]["is_failure"], true);
    EXPECT_EQ(by_id[id]["objective"], nullptr);
  }
  EXPECT_EQ(by_id["bad"]["state"], "failed");
  EXPECT_EQ(by_id["bad"]["cost"], 10.0);
  EXPECT_EQ(by_id["dead"]["state"], "crashed");
  EXPECT_EQ(by_id["dead"]["cost"], 47.0);
  EXPECT_EQ(by_id["silent"]["state"], "timeout");
  EXPECT_EQ(by_id["silent"]["cost"], 301.0);

  j = ok(R"({"op":"observations","sweep":"s2"})", 400s);
  EXPECT_EQ(ids_of(j["observations"], "run_id"), (std::vector<std::string>{"other"}));
  j = ok(R"({"op":"observations","sweep":"s3"})", 400s);
  EXPECT_TRUE(j["observations"].is_array());
  EXPECT_TRUE(j["observations"].empty());
}

TEST_F(ServiceTest, LateCompletionIsAnObservationMarkedLate) {
  lifecycle("r1", "s1", "", 0s);
  ASSERT_EQ(sup.expire(at(301s)).size(), 1u);
  EXPECT_EQ(ok(R"({"op":"complete","run":"r1","objective":0.4,"cost":5})", 331s)["state"],
            "success");
  ASSERT_TRUE(last.result.change);
  EXPECT_EQ(last.result.change->reason, transition_reason::late_completed);
  EXPECT_EQ(last.result.change->late_by_s, 30.0);
  json o = ok(R"({"op":"observations","sweep":"s1"})", 340s)["observations"];
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0]["late"], true);
  EXPECT_EQ(o[0]["finished_at"], format_utc(at(331s).wall));  // the late report, not the timeout
  EXPECT_EQ(o[0]["is_failure"], false);
  EXPECT_EQ(o[0]["objective"], 0.4);
  json shown = ok(R"({"op":"show","run":"r1"})", 340s)["run"];
  EXPECT_EQ(shown["late_by_s"], 30.0);
  EXPECT_EQ(shown["reason"], "late_completed");
}

TEST_F(ServiceTest, SuggestionInRepliesIsTheJsonOfTheRequestByteForByte) {
  // Kept as text, parsed again for the replies: the bytes on the wire are those of the value the
  // request gave, dumped (keys sorted, numbers in their shortest exact form, escapes as dumped).
  const std::string given =
      R"({"opt":{"name":"sgd","decay":null,"nesterov":true},"lr":1e-05,"layers":[64,32.5,-1],)"
      R"("tag":"caf\u00e9 \"q\" \\ \n","big":18446744073709551615,"third":0.3333333333333333})";
  const std::string want = R"("suggestion":)" + json::parse(given).dump();
  ok(R"({"op":"register","run":"r1","sweep":"s1","suggestion":)" + given + "}", 35s);
  ok(R"({"op":"show","run":"r1"})", 36s);
  EXPECT_THAT(last.reply, HasSubstr(want));
  ok(R"({"op":"complete","run":"r1","objective":0.5})", 40s);
  ok(R"({"op":"observations","sweep":"s1"})", 41s);
  EXPECT_THAT(last.reply, HasSubstr(want));
  ok(R"({"op":"show","run":"r1"})", 42s);
  EXPECT_THAT(last.reply, HasSubstr(want));
}

TEST_F(ServiceTest, ShowWithholdsTheSuggestionAndErrorFromOtherUids) {
  ok(R"({"op":"register","run":"r1","sweep":"s1","suggestion":{"lr":0.5}})", 0s);
  ok(R"({"op":"fail","run":"r1","error":"secret path /home/alice/data"})", 1s);
  // Root registers a run in alice's sweep: alice owns the sweep, so she reads it too.
  ok(R"({"op":"register","run":"r2","sweep":"s1","suggestion":{"lr":0.1}})", 2s, admin);

  json other = ok(R"({"op":"show","run":"r1"})", 3s, bob)["run"];
  EXPECT_EQ(other["suggestion"], nullptr);
  EXPECT_FALSE(other.contains("error"));
  EXPECT_EQ(other["withheld"], true);
  for (const json& t : other["transitions"]) EXPECT_FALSE(t.contains("error")) << t.dump();
  EXPECT_EQ(other["state"], "failed");  // the state and figures stay public

  for (const caller& reader : {alice, admin}) {
    json full = ok(R"({"op":"show","run":"r1"})", 4s, reader)["run"];
    EXPECT_EQ(full["suggestion"]["lr"], 0.5);
    EXPECT_EQ(full["error"], "secret path /home/alice/data");
    EXPECT_FALSE(full.contains("withheld"));
  }
  EXPECT_EQ(ok(R"({"op":"show","run":"r2"})", 5s, alice)["run"]["suggestion"]["lr"], 0.1);
}

TEST_F(ServiceTest, ObservationsWithholdSuggestionsFromOtherUids) {
  lifecycle("ok1", "s1", R"({"op":"complete","run":"ok1","objective":0.9})", 0s);
  json mine = ok(R"({"op":"observations","sweep":"s1"})", 20s)["observations"];
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0]["suggestion"]["lr"], 0.1);
  json theirs = ok(R"({"op":"observations","sweep":"s1"})", 20s, bob)["observations"];
  ASSERT_EQ(theirs.size(), 1u);
  EXPECT_EQ(theirs[0]["suggestion"], nullptr);
  EXPECT_EQ(theirs[0]["withheld"], true);
  EXPECT_EQ(theirs[0]["objective"], 0.9);
}

TEST_F(ServiceTest, ShowCarriesTheRunsDeliveryFromTheDaemon) {
  ok(R"({"op":"register","run":"r1"})", 0s);
  const json shown = ok(R"({"op":"show","run":"r1"})", 1s)["run"];
  EXPECT_EQ(shown["wandb"]["status"], "pending");
  EXPECT_EQ(shown["wandb"]["of"], "r1");
}

TEST_F(ServiceTest, ResyncIsForTheOwnerAndAdminsAndChangesNothing) {
  ok(R"({"op":"register","run":"r1"})", 0s);
  json j = ok(R"({"op":"resync","run":"r1"})", 1s);
  EXPECT_EQ(j["state"], "initializing");
  ASSERT_NE(last.resync, nullptr);
  EXPECT_EQ(last.resync->id, "r1");
  EXPECT_FALSE(last.result.change.has_value());
  ok(R"({"op":"resync","run":"r1"})", 2s, admin);
  EXPECT_NE(last.resync, nullptr);
  refused(R"({"op":"resync","run":"r1"})", 3s, "forbidden", bob);
  EXPECT_EQ(last.resync, nullptr);
  refused(R"({"op":"resync","run":"nope"})", 4s, "unknown_run");
  EXPECT_EQ(last.resync, nullptr);
  refused(R"({"op":"resync","run":"r1","force":true})", 5s, "bad_request");
}

TEST_F(ServiceTest, ReconcileIsHandedToTheDaemonAndApplyNeedsAnAdmin) {
  // The daemon answers it once W&B has been read: no reply from the service.
  last = svc.handle(R"({"op":"reconcile","sweep":"sw"})", bob, at(1s));
  EXPECT_TRUE(last.reply.empty());
  ASSERT_TRUE(last.reconcile.has_value());  // a dry run: anyone
  EXPECT_EQ(last.reconcile->sweep, "sw");
  last = svc.handle(R"({"op":"reconcile","sweep":"sw","apply":true})", admin, at(2s));
  ASSERT_TRUE(last.reconcile.has_value());
  EXPECT_TRUE(last.reconcile->apply);
  const json j = refused(R"({"op":"reconcile","sweep":"sw","apply":true})", 3s, "forbidden", bob);
  EXPECT_FALSE(last.reconcile.has_value());
  EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr("uid 1001"));
}

TEST_F(ServiceTest, ErrorsReachTheClient) {
  ok(R"({"op":"register","run":"r1","sweep":"s1"})", 0s);

  refused(R"({"op":"start","run":"ghost"})", 1s, "unknown_run");
  refused(R"({"op":"heartbeat","run":"ghost"})", 1s, "unknown_run");
  refused(R"({"op":"complete","run":"ghost"})", 1s, "unknown_run");
  refused(R"({"op":"fail","run":"ghost","error":"x"})", 1s, "unknown_run");

  refused(R"({"op":"start","run":"r1"})", 2s, "forbidden", bob);
  refused(R"({"op":"heartbeat","run":"r1"})", 2s, "forbidden", bob);
  refused(R"({"op":"complete","run":"r1"})", 2s, "forbidden", bob);
  refused(R"({"op":"fail","run":"r1","error":"x"})", 2s, "forbidden", bob);
  refused(R"({"op":"register","run":"r1"})", 2s, "forbidden", bob);
  EXPECT_EQ(sup.find("r1")->state, run_state::initializing);

  refused(R"({"op":"register","run":"r1","project":"elsewhere"})", 3s, "conflict");
  ok(R"({"op":"complete","run":"r1","objective":1})", 4s);
  refused(R"({"op":"complete","run":"r1","objective":2})", 5s, "conflict");
  refused(R"({"op":"fail","run":"r1","error":"x"})", 5s, "conflict");
  refused(R"({"op":"register","run":"r1","sweep":"s1"})", 5s, "conflict");

  refused("{\"op\":\"hello\"", 6s, "bad_json");
  refused(R"({"op":"start"})", 6s, "bad_request");
  refused(R"({"op":"hi"})", 6s, "unknown_op");

  // An admin may act on anyone's run.
  ok(R"({"op":"register","run":"r2"})", 7s, bob);
  EXPECT_EQ(ok(R"({"op":"fail","run":"r2","error":"cancelled"})", 8s, admin)["state"], "failed");
  EXPECT_TRUE(last.result.change.has_value());
}

TEST_F(ServiceTest, BusyWhenTheRunLimitIsReached) {
  supervisor_limits l = defaults();
  l.max_runs = 2;
  sup.set_limits(l);
  ok(R"({"op":"register","run":"r1"})", 0s);
  ok(R"({"op":"register","run":"r2"})", 0s);
  json j = refused(R"({"op":"register","run":"r3"})", 1s, "busy");
  EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr("max_runs"));
  EXPECT_EQ(sup.size(), 2u);
  refused(R"({"op":"show","run":"r3"})", 1s, "unknown_run");
}

TEST_F(ServiceTest, ChangeIsSetExactlyWhenATransitionHappened) {
  struct step {
    std::string line;
    bool changes;
  };
  const std::vector<step> steps = {
      {R"({"op":"hello"})", false},
      {R"({"op":"register","run":"r1"})", true},
      {R"({"op":"register","run":"r1"})", false},
      {R"({"op":"heartbeat","run":"r1","progress":1})", false},
      {R"({"op":"start","run":"r1"})", true},
      {R"({"op":"start","run":"r1"})", false},
      {R"({"op":"heartbeat","run":"r1","progress":2,"timeout_s":60})", false},
      {R"({"op":"status"})", false},
      {R"({"op":"list"})", false},
      {R"({"op":"show","run":"r1"})", false},
      {R"({"op":"observations"})", false},
      {R"({"op":"complete","run":"r1","objective":3})", true},
      {R"({"op":"complete","run":"r1","objective":3})", false},
      {R"({"op":"start","run":"r1"})", false},
      {R"({"op":"heartbeat","run":"r1"})", false},
      {R"({"op":"register","run":"r2"})", true},
      {R"({"op":"fail","run":"r2","error":"e"})", true},
      {R"({"op":"fail","run":"r2","error":"e"})", false},
  };
  int second = 0;
  for (const step& s : steps) {
    SCOPED_TRACE(s.line);
    json j = ok(s.line, std::chrono::seconds(++second));
    EXPECT_EQ(last.result.change.has_value(), s.changes);
    if (last.result.change) {
      // The reply reports the state the transition led to.
      EXPECT_EQ(j["state"], to_string(last.result.change->to));
      EXPECT_EQ(j["run"], last.result.change->run);
    }
  }
  EXPECT_EQ(sup.find("r1")->history.size(), 3u);
  EXPECT_EQ(sup.find("r2")->history.size(), 2u);
}

TEST_F(ServiceTest, AHandledChangeIsOnlyPlannedUntilTheDaemonAppliesIt) {
  apply_changes = false;
  ok(R"({"op":"register","run":"r1"})", 0s);
  ASSERT_TRUE(last.result.change);
  EXPECT_EQ(sup.find("r1"), nullptr);  // planned: the daemon stores it, then applies it
  sup.apply(std::move(*last.result.change));
  ok(R"({"op":"start","run":"r1"})", 1s);
  sup.apply(std::move(*last.result.change));
  const json j = ok(R"({"op":"complete","run":"r1","objective":1})", 2s);
  EXPECT_EQ(j["state"], "success");  // the reply says the state the change leads to
  ASSERT_TRUE(last.result.change);
  // Not stored (the journal refused it): dropped, and nothing changed.
  json status = ok(R"({"op":"status"})", 3s);
  EXPECT_EQ(status["runs"]["running"], 1);
  EXPECT_EQ(status["runs"]["success"], 0);
  EXPECT_EQ(ok(R"({"op":"show","run":"r1"})", 3s)["run"]["state"], "running");
  EXPECT_TRUE(ok(R"({"op":"observations"})", 3s)["observations"].empty());
}

}  // namespace
}  // namespace sweepd::core
