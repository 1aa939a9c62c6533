// The docs that stand alone in the repository stay true to the code: every op and error code the
// daemon knows is in docs/protocol.md, and the README points at nothing outside the repository.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/errors.hpp"
#include "core/protocol.hpp"

namespace sweepd::core {
namespace {

namespace fs = std::filesystem;

std::string read_doc(const std::string& relative) {
  std::ifstream in(fs::path(SWEEPD_SOURCE_DIR) / relative);
  EXPECT_TRUE(in) << relative << " is missing";
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ProtocolDoc, NamesEveryOp) {
  const std::string doc = read_doc("docs/protocol.md");
  for (std::string_view op : op_names()) {
    EXPECT_NE(doc.find("### `" + std::string(op) + "`"), std::string::npos)
        << "docs/protocol.md has no section '### `" << op << "`'";
  }
}

TEST(ProtocolDoc, NamesEveryErrorCode) {
  const std::string doc = read_doc("docs/protocol.md");
  for (error_code c : all_error_codes) {
    EXPECT_NE(doc.find("| `" + std::string(to_string(c)) + "` |"), std::string::npos)
        << "docs/protocol.md's error table has no row for `" << to_string(c) << "`";
  }
}

TEST(Readme, PointsAtNothingOutsideTheRepository) {
  for (const char* doc : {"README.md", "docs/protocol.md", "docs/operations.md"}) {
    const std::string text = read_doc(doc);
    EXPECT_EQ(text.find("DESIGN"), std::string::npos) << doc << " cites a document not in the repo";
    EXPECT_EQ(text.find("/work/"), std::string::npos) << doc;
    // Every repository path it names exists.
    static const std::regex path(
        R"((?:^|[\s`(])((?:docs|config|systemd|contrib|examples|clients|scripts|man|packaging|bench|tests|third_party)/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*))");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), path);
         it != std::sregex_iterator(); ++it) {
      std::string p = (*it)[1];
      while (!p.empty() && (p.back() == '.' || p.back() == ',')) p.pop_back();
      // A program is named by its source's path without the extension (bench/expiry_bench).
      const fs::path named = fs::path(SWEEPD_SOURCE_DIR) / p;
      EXPECT_TRUE(fs::exists(named) || fs::exists(named.string() + ".cpp"))
          << doc << " names " << p << ", which is not in the repository";
    }
  }
}

}  // namespace
}  // namespace sweepd::core
