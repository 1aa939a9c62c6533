#include "io/logging.hpp"

#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "core/time.hpp"

namespace sweepd::io {

namespace {

/// One JSON object per record; the message is escaped by nlohmann, never by hand.
class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const nlohmann::json record = {
        {"time", core::format_utc(msg.time)},
        {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                              spdlog::level::to_string_view(msg.level).size())},
        {"msg", std::string(msg.payload.data(), msg.payload.size())}};
    const std::string line =
        record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

}  // namespace

void setup_logging(const core::config::log_section& log) {
  // Built directly, not through the registry's factory, which refuses a second logger of the
  // same name: SIGHUP calls this again while the old logger is the default. set_default_logger
  // replaces the old one in the registry.
  auto logger =
      std::make_shared<spdlog::logger>("sweepd", std::make_shared<spdlog::sinks::stderr_sink_st>());
  if (log.format == core::config::log_format::json) {
    logger->set_formatter(std::make_unique<json_formatter>());
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(spdlog::level::from_str(log.level));
  spdlog::set_default_logger(logger);
}

}  // namespace sweepd::io
