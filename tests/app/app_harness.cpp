#include "app/app_harness.hpp"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <boost/asio/post.hpp>
#include <future>

#include "io/config_loader.hpp"

namespace sweepd::test {

namespace {

constexpr auto wait_limit = std::chrono::seconds(10);

}  // namespace

bool log_capture::wait_for(const std::string& text, std::chrono::milliseconds timeout) {
  std::unique_lock lock(text_mutex_);
  return logged_.wait_for(lock, timeout, [&] { return text_.find(text) != std::string::npos; });
}

std::string log_capture::text() const {
  std::lock_guard lock(text_mutex_);
  return text_;
}

void log_capture::sink_it_(const spdlog::details::log_msg& msg) {
  {
    std::lock_guard lock(text_mutex_);
    text_.append(msg.payload.data(), msg.payload.size());
    text_ += '\n';
  }
  logged_.notify_all();
}

daemon_in_process::daemon_in_process(const temp_dir& dir, const std::string& extra)
    : paths_(daemon_paths::in(dir)) {
  write_daemon_config(paths_, extra);
}

daemon_in_process::~daemon_in_process() {
  // Nothing may leave a destructor: a stop that throws (a failed join) fails the test instead.
  try {
    stop();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "stopping the daemon: " << e.what();
  }
}

void daemon_in_process::capture_log() {
  auto logger = std::make_shared<spdlog::logger>("sweepd-app-test", log_);
  logger->set_level(spdlog::level::debug);
  spdlog::set_default_logger(std::move(logger));
}

void daemon_in_process::start() {
  auto loaded = io::load_config_file(paths_.config);
  ASSERT_TRUE(loaded) << loaded.error();
  capture_log();
  daemon_ = std::make_unique<app::daemon>(std::move(*loaded), paths_.config, clock_);
  ASSERT_EQ(daemon_->open(), core::success);
  loop_ = std::thread([this] { daemon_->run(); });
  ASSERT_TRUE(client_.connect(paths_.socket)) << client_.last_error();
}

void daemon_in_process::stop() {
  client_.close();
  if (loop_.joinable()) {
    boost::asio::post(daemon_->io(), [this] { daemon_->stop(); });
    loop_.join();
  }
  daemon_.reset();
}

nlohmann::json daemon_in_process::call(const nlohmann::json& request) {
  auto reply = client_.call(request);
  EXPECT_TRUE(reply) << client_.last_error() << "\n" << log();
  return reply.value_or(nlohmann::json());
}

void daemon_in_process::on_loop(const std::function<void()>& f) {
  // Shared with the posted handler, which may outlive a wait that timed out.
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  boost::asio::post(daemon_->io(), [f, done] {
    f();
    done->set_value();
  });
  ASSERT_EQ(finished.wait_for(wait_limit), std::future_status::ready)
      << "the daemon's loop did not run a posted task";
}

void daemon_in_process::advance(std::chrono::nanoseconds d) {
  on_loop([this, d] { clock_.advance(d); });
  // Moving the clock cancelled the timers; their loops resume in handlers queued behind the
  // move. Two turns more and what they made due is stored: each runs synchronously once resumed.
  on_loop([] {});
  on_loop([] {});
}

void daemon_in_process::reload(const std::string& extra, bool raw) {
  write_daemon_config(paths_, extra, raw);
  on_loop([this] {
    daemon_->reload();
    capture_log();  // a valid reload sets up the configured logging again
  });
}

void daemon_in_process::refuse_journal_writes(bool refuse) {
  const char* sql = refuse ? "PRAGMA query_only=1" : "PRAGMA query_only=0";
  int rc = SQLITE_ERROR;
  on_loop([&] { rc = sqlite3_exec(daemon_->journal()->handle(), sql, nullptr, nullptr, nullptr); });
  ASSERT_EQ(rc, SQLITE_OK) << sql;
}

bool daemon_in_process::wait_for_log(const std::string& text) {
  return log_->wait_for(text, wait_limit);
}

}  // namespace sweepd::test
