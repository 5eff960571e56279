// error.cpp - error helpers (see error.hpp).
#include "error.hpp"

namespace h20::ccl {

void check(h20Error_t rc, const char* what) {
  if (rc == h20Success) return;
  throw Error(rc, fmt::format("{}: {}", what, h20GetLastErrorMessage()));
}

std::string typeName(h20DataType type) {
  switch (type) {
    case H20_R_32F:
      return "H20_R_32F";
    case H20_R_16BF:
      return "H20_R_16BF";
    case H20_R_16F:
      return "H20_R_16F";
  }
  return fmt::format("h20DataType({})", static_cast<int>(type));
}

}  // namespace h20::ccl
