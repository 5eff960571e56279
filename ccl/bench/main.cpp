// main.cpp - h20-ccl-bench: the collectives benchmark as a stand-alone program.
#include "ccl_bench.hpp"

int main(int argc, char** argv) {
  return runCclBench(argc, argv);
}
