# check_test_names.cmake - every ctest name of the build is stable: no printout of a test
# parameter (gtest_discover_tests without NO_PRETTY_VALUES appends "  # GetParam() = ..."), no
# GoogleTest hexdump of one ("N-byte object <..>", which holds pointers). Such names differ from
# build to build and lane to lane, so a failing name from one lane could not be run in another.
#   cmake -DCTEST=<ctest> -DBUILD_DIR=<build tree> -P check_test_names.cmake
execute_process(COMMAND ${CTEST} -N --test-dir ${BUILD_DIR}
  OUTPUT_VARIABLE listing RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ctest -N failed (${rc})")
endif()
string(REGEX MATCHALL "Test +#[0-9]+: [^\n]*" tests "${listing}")
list(LENGTH tests count)
if(count LESS 10)
  message(FATAL_ERROR "ctest -N listed only ${count} tests:\n${listing}")
endif()
set(bad "")
foreach(t IN LISTS tests)
  if(t MATCHES "GetParam\\(\\)|-byte object|[<>]")
    string(APPEND bad "  ${t}\n")
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "unstable test names (name the parameters, discover with NO_PRETTY_VALUES):\n${bad}")
endif()
message(STATUS "${count} test names, all stable")
