// byte_size.hpp - parsing of byte sizes given by users ("64MiB", "8GiB", "1048576", "2G"), shared
// by the runtime's environment parser and h20d's options.
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>

namespace h20::base {

// Binary units k/m/g/t (also kib/mib/gib/tib) and decimal kb/mb/gb/tb, case-insensitive, with
// optional spaces; nullopt if malformed or if the value overflows.
inline std::optional<std::size_t> parseByteSize(const std::string& text) {
  std::size_t b = 0, e = text.size();
  while (b < e && std::isspace(static_cast<unsigned char>(text[b])))
    ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(text[e - 1])))
    --e;
  const std::string t = text.substr(b, e - b);
  std::size_t digits = 0;
  while (digits < t.size() && std::isdigit(static_cast<unsigned char>(t[digits])))
    ++digits;
  if (digits == 0) return std::nullopt;
  std::uint64_t value = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + digits, value);
  if (ec != std::errc()) return std::nullopt;
  std::string unit = t.substr(digits);
  unit.erase(0, std::min(unit.size(), unit.find_first_not_of(" \t\n\v\f\r")));
  std::transform(unit.begin(), unit.end(), unit.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::uint64_t scale;
  if (unit.empty() || unit == "b")
    scale = 1;
  else if (unit == "k" || unit == "kib")
    scale = 1ull << 10;
  else if (unit == "m" || unit == "mib")
    scale = 1ull << 20;
  else if (unit == "g" || unit == "gib")
    scale = 1ull << 30;
  else if (unit == "t" || unit == "tib")
    scale = 1ull << 40;
  else if (unit == "kb")
    scale = 1000ull;
  else if (unit == "mb")
    scale = 1000ull * 1000;
  else if (unit == "gb")
    scale = 1000ull * 1000 * 1000;
  else if (unit == "tb")
    scale = 1000ull * 1000 * 1000 * 1000;
  else
    return std::nullopt;
  if (value > UINT64_MAX / scale) return std::nullopt;
  return static_cast<std::size_t>(value * scale);
}

}  // namespace h20::base
