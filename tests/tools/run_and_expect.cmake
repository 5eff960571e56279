# run_and_expect.cmake - runs one program and checks its exit status and its output.
#
# CTest's PASS_REGULAR_EXPRESSION ignores the exit status, and a sample must both exit 0 and
# print PASS; this script checks both. Usage (from add_test):
#   cmake -DPROGRAM=<path> [-DARGS=a;b] [-DEXPECT_EXIT=0] -DEXPECT_REGEX=<regex> -P run_and_expect.cmake
if(NOT DEFINED EXPECT_EXIT)
  set(EXPECT_EXIT 0)
endif()
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE rc OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
message("---- stdout ----\n${out}---- stderr ----\n${err}---- exit status: ${rc}")
if(NOT "${rc}" STREQUAL "${EXPECT_EXIT}")
  message(FATAL_ERROR "${PROGRAM} exited with '${rc}', expected ${EXPECT_EXIT}")
endif()
if(DEFINED EXPECT_REGEX AND NOT out MATCHES "${EXPECT_REGEX}")
  message(FATAL_ERROR "${PROGRAM}: stdout does not match '${EXPECT_REGEX}'")
endif()
