#include "core/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>

namespace sweepd::core {
namespace {

TEST(MetricRegistry, RendersCountersWithHelpTypeAndLabelsInOrder) {
  metric_registry r;
  auto& requests = r.counters("sweepd_requests_total", "Requests answered.", {"op", "result"});
  requests.with({"register", "ok"}).inc();
  requests.with({"register", "ok"}).inc(2);
  requests.with({"complete", "conflict"}).inc();
  EXPECT_EQ(r.render(),
            "# HELP sweepd_requests_total Requests answered.\n"
            "# TYPE sweepd_requests_total counter\n"
            "sweepd_requests_total{op=\"complete\",result=\"conflict\"} 1\n"
            "sweepd_requests_total{op=\"register\",result=\"ok\"} 3\n");
}

TEST(MetricRegistry, FamiliesKeepTheirDeclarationOrderAndEmptyOnesAreLeftOut) {
  metric_registry r;
  auto& b = r.gauges("b_gauge", "B.");
  r.counters("unused_total", "Never touched.", {"x"});
  auto& a = r.gauges("a_gauge", "A.");
  a.get().set(2.5);
  b.get().set(-1);
  EXPECT_EQ(r.render(),
            "# HELP b_gauge B.\n# TYPE b_gauge gauge\nb_gauge -1\n"
            "# HELP a_gauge A.\n# TYPE a_gauge gauge\na_gauge 2.5\n");
}

TEST(MetricRegistry, SeriesKeepTheirAddress) {
  metric_registry r;
  auto& f = r.counters("c_total", "C.", {"k"});
  counter& first = f.with({"a"});
  for (int i = 0; i < 100; ++i) f.with({std::to_string(i)});
  first.inc();
  EXPECT_EQ(&first, &f.with({"a"}));
  EXPECT_EQ(f.with({"a"}).value(), 1);
}

TEST(MetricRegistry, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  metric_registry r;
  auto& h = r.histograms("op_duration_seconds", "Latency.", {0.001, 0.01, 0.1}, {"op"});
  histogram& reg = h.with({"register"});
  reg.observe(0.0005);
  reg.observe(0.001);  // on a bound: counted in that bucket (le means <=)
  reg.observe(0.05);
  reg.observe(3);
  EXPECT_EQ(r.render(),
            "# HELP op_duration_seconds Latency.\n"
            "# TYPE op_duration_seconds histogram\n"
            "op_duration_seconds_bucket{op=\"register\",le=\"0.001\"} 2\n"
            "op_duration_seconds_bucket{op=\"register\",le=\"0.01\"} 2\n"
            "op_duration_seconds_bucket{op=\"register\",le=\"0.1\"} 3\n"
            "op_duration_seconds_bucket{op=\"register\",le=\"+Inf\"} 4\n"
            "op_duration_seconds_sum{op=\"register\"} 3.0515\n"
            "op_duration_seconds_count{op=\"register\"} 4\n");
}

TEST(MetricRegistry, HistogramWithoutLabels) {
  metric_registry r;
  r.histograms("lag_seconds", "Lag.", {1}).get().observe(2);
  EXPECT_EQ(r.render(),
            "# HELP lag_seconds Lag.\n# TYPE lag_seconds histogram\n"
            "lag_seconds_bucket{le=\"1\"} 0\nlag_seconds_bucket{le=\"+Inf\"} 1\n"
            "lag_seconds_sum 2\nlag_seconds_count 1\n");
}

TEST(MetricRegistry, NanObservationLandsInInfOnly) {
  const std::vector<double> bounds{1, 2};
  histogram h(&bounds);
  h.observe(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(h.buckets(), (std::vector<std::uint64_t>{0, 0, 1}));
}

TEST(MetricRegistry, LabelValuesAndHelpAreEscaped) {
  metric_registry r;
  r.gauges("g", "Back\\slash and\nnewline \"quotes\" stay.", {"v"}).with({"a\\b\"c\nd"}).set(1);
  EXPECT_EQ(r.render(),
            "# HELP g Back\\\\slash and\\nnewline \"quotes\" stay.\n# TYPE g gauge\n"
            "g{v=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(MetricRegistry, IllFormedDeclarationsAndWrongArityThrow) {
  metric_registry r;
  EXPECT_THROW(r.counters("9starts_with_digit", "x"), std::logic_error);
  EXPECT_THROW(r.counters("has-dash", "x"), std::logic_error);
  EXPECT_THROW(r.counters("ok_total", "x", {"__reserved"}), std::logic_error);
  EXPECT_THROW(r.counters("ok_total", "x", {"bad:colon"}), std::logic_error);
  EXPECT_THROW(r.histograms("h", "x", {1}, {"le"}), std::logic_error);
  EXPECT_THROW(r.histograms("h", "x", {}), std::logic_error);
  EXPECT_THROW(r.histograms("h", "x", {2, 1}), std::logic_error);
  EXPECT_THROW(r.histograms("h", "x", {1, 1}), std::logic_error);
  EXPECT_THROW(r.histograms("h", "x", {1, std::numeric_limits<double>::infinity()}),
               std::logic_error);
  auto& f = r.counters("two_total", "x", {"a", "b"});
  EXPECT_THROW(f.with({"only one"}), std::logic_error);
  EXPECT_THROW(f.get(), std::logic_error);
}

TEST(FormatMetricValue, IntegersPlainFractionsShortestSpecialsNamed) {
  EXPECT_EQ(format_metric_value(0), "0");
  EXPECT_EQ(format_metric_value(42), "42");
  EXPECT_EQ(format_metric_value(-7), "-7");
  EXPECT_EQ(format_metric_value(1e15), "1000000000000000");
  EXPECT_EQ(format_metric_value(0.1), "0.1");
  EXPECT_EQ(format_metric_value(0.00025), "0.00025");
  EXPECT_EQ(format_metric_value(1e300), "1e+300");
  EXPECT_EQ(format_metric_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_metric_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_metric_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricNames, FollowTheExpositionGrammar) {
  EXPECT_TRUE(is_valid_metric_name("sweepd_runs"));
  EXPECT_TRUE(is_valid_metric_name("job:rate5m"));
  EXPECT_TRUE(is_valid_metric_name("_x"));
  EXPECT_FALSE(is_valid_metric_name(""));
  EXPECT_FALSE(is_valid_metric_name("1x"));
  EXPECT_FALSE(is_valid_metric_name("a b"));
  EXPECT_TRUE(is_valid_label_name("op"));
  EXPECT_FALSE(is_valid_label_name("__name__"));
  EXPECT_FALSE(is_valid_label_name("a:b"));
  EXPECT_FALSE(is_valid_label_name(""));
}

}  // namespace
}  // namespace sweepd::core
