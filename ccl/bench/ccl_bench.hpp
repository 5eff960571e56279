// ccl_bench.hpp - the collectives benchmark (nccl-tests style), callable from any tool's main.
#pragma once

// Runs the benchmark with command-line arguments (argv[0] is the program name; --help lists the
// options) and prints nccl-tests-style tables on stdout. Returns the process exit status: 0 (also
// for --help), 2 for a bad argument or option value (message on stderr, nothing run), 1 for a
// failed call or (with --check) a wrong result.
int runCclBench(int argc, char** argv);
