// enum_value.hpp - reading an enum argument that a caller passed, before it is trusted.
//
// Part of h20_base, the internal header library shared by libh20rt, libh20kernels and libh20ccl
// (never installed). A C caller may pass any int where an enum parameter or field is declared,
// and loading a value outside the enumerators as the C++ enum type is undefined behaviour. Every
// entry point therefore reads enums as plain ints with rawEnum() and range-checks them before it
// converts back (UBSan lanes catch the places that forget).
#pragma once

#include <cstring>
#include <type_traits>

namespace h20::base {

// The bits of `e` as an int, without loading it as Enum.
template <class Enum>
int rawEnum(const Enum& e) {
  static_assert(std::is_enum_v<Enum> && sizeof(Enum) == sizeof(int));
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

}  // namespace h20::base
