// test_main.cpp - main() of the C API test binaries: runs a child scenario when this process was
// started by RunChild (see child_process.hpp), otherwise runs GoogleTest as usual.
#include "child_process.hpp"

#include <gtest/gtest.h>

int main(int argc, char** argv) {
  const int childExit = h20test::MaybeRunChildScenario();
  if (childExit >= 0) return childExit;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
