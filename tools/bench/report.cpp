// report.cpp - h20-bench's shared helpers: errors, statistics, sizes and the report printers.
//
// The markdown printer writes GitHub tables that can be pasted into the README as they are; the
// JSON printer writes the same numbers unrounded, for scripts that track them over time.
#include <fmt/format.h>

#include <cctype>

#include "bench.hpp"

namespace h20::bench {

void check(h20Error_t code, std::string_view call) {
  if (code == h20Success) return;
  const char* detail = h20GetLastErrorMessage();
  throw BenchError(fmt::format("{} failed: {}: {}", call, h20GetErrorName(code),
                               (detail && *detail) ? detail : h20GetErrorString(code)));
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
  double hi = v[mid];
  if (v.size() % 2) return hi;
  double lo = *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid));
  return 0.5 * (lo + hi);
}

double min_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end());
}
double max_of(const std::vector<double>& v) {
  return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
}

double mean(const std::vector<double>& v) {
  if (v.empty()) return 0.0;
  double sum = 0;
  for (double x : v)
    sum += x;
  return sum / static_cast<double>(v.size());
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  auto k = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

Spread spread(const std::vector<double>& samples) {
  return {percentile(samples, 50), percentile(samples, 99), mean(samples), samples.size()};
}

void empty_kernel(const h20KernelContext*, const void*) {}

std::string format_bytes(std::size_t bytes) {
  if (bytes >= (std::size_t{1} << 30) && bytes % (std::size_t{1} << 30) == 0)
    return fmt::format("{} GiB", bytes >> 30);
  if (bytes >= (std::size_t{1} << 20) && bytes % (std::size_t{1} << 20) == 0)
    return fmt::format("{} MiB", bytes >> 20);
  if (bytes >= 1024 && bytes % 1024 == 0) return fmt::format("{} KiB", bytes >> 10);
  return fmt::format("{} B", bytes);
}

std::size_t parse_bytes(const std::string& text) {
  std::size_t pos = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(text, &pos);
  } catch (const std::exception&) {
    throw CLI::ValidationError(
        fmt::format("\"{}\" is not a size (e.g. 4096, 256K, 64M, 1G)", text));
  }
  std::string suffix = text.substr(pos);
  for (char& c : suffix)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B")
    shift = 0;
  else if (suffix == "K" || suffix == "KB" || suffix == "KIB")
    shift = 10;
  else if (suffix == "M" || suffix == "MB" || suffix == "MIB")
    shift = 20;
  else if (suffix == "G" || suffix == "GB" || suffix == "GIB")
    shift = 30;
  else
    throw CLI::ValidationError(fmt::format("\"{}\": unknown size suffix \"{}\"", text, suffix));
  if (n == 0) throw CLI::ValidationError(fmt::format("\"{}\": the size must be positive", text));
  return static_cast<std::size_t>(n) << shift;
}

CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& text) {
        try {
          parse_bytes(text);
          return std::string();
        } catch (const CLI::ValidationError& e) {
          return std::string(e.what());
        }
      },
      "SIZE");
}

Table& Report::add_table(std::string title, std::vector<std::string> columns,
                         std::vector<bool> rightAligned) {
  Table t;
  t.title = std::move(title);
  t.columns = std::move(columns);
  t.rightAligned = std::move(rightAligned);
  tables_.push_back(std::move(t));
  return tables_.back();
}

namespace {

void print_md_table(const std::vector<std::string>& columns, const std::vector<bool>& right,
                    const std::vector<std::vector<std::string>>& rows) {
  std::string line = "|";
  for (const auto& c : columns)
    line += fmt::format(" {} |", c);
  fmt::print("{}\n", line);
  line = "|";
  for (std::size_t i = 0; i < columns.size(); ++i)
    line += right[i] ? "---:|" : "---|";
  fmt::print("{}\n", line);
  for (const auto& r : rows) {
    line = "|";
    for (const auto& cell : r)
      line += fmt::format(" {} |", cell);
    fmt::print("{}\n", line);
  }
}

}  // namespace

void Report::print_markdown() const {
  if (!header_.empty()) fmt::print("{}\n\n", header_);
  if (!summary_.empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const SummaryRow& s : summary_) {
      rows.push_back(
          {s.benchmark,
           fmt::format("{:.{}f}{}{}", s.value, s.decimals, s.unit == "x" ? "" : " ", s.unit),
           s.target, s.meets ? "yes" : "no", s.pocl, s.hipcpu});
    }
    fmt::print("## Summary\n\n");
    print_md_table({"benchmark", "h20", "target", "meets", "PoCL 3.1", "HIP-CPU"},
                   {false, true, true, false, true, true}, rows);
    fmt::print("\n");
  }
  for (const Table& t : tables_) {
    fmt::print("## {}\n\n", t.title);
    print_md_table(t.columns, t.rightAligned, t.rows);
    for (const auto& n : t.notes)
      fmt::print("\n{}\n", n);
    fmt::print("\n");
  }
}

void Report::print_json() const {
  nlohmann::ordered_json doc;
  doc["machine"] = machine_;
  doc["summary"] = nlohmann::ordered_json::array();
  for (const SummaryRow& s : summary_) {
    doc["summary"].push_back({{"key", s.key},
                              {"benchmark", s.benchmark},
                              {"value", s.value},
                              {"unit", s.unit},
                              {"target", s.target},
                              {"meets", s.meets}});
  }
  doc["tables"] = nlohmann::ordered_json::object();
  for (const Table& t : tables_)
    doc["tables"][t.title] = t.json;
  fmt::print("{}\n", doc.dump(2));
}

}  // namespace h20::bench
