/*
 * sample_check.h - error checking shared by the samples.
 *
 * Every h20 call in a sample goes through CHECK: on failure it prints the call, the error name and
 * the runtime's detailed message (h20GetLastErrorMessage names the argument and its value), then
 * prints FAIL and exits non-zero, so a broken runtime can never make a sample look successful.
 * Header-only and C11, so a sample stays one file plus this one.
 */
#ifndef H20_SAMPLE_CHECK_H_
#define H20_SAMPLE_CHECK_H_

#include <h20/h20_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                        \
  do {                                                                                     \
    h20Error_t check_err_ = (call);                                                        \
    if (check_err_ != h20Success) {                                                        \
      const char* check_msg_ = h20GetLastErrorMessage();                                   \
      fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,            \
              h20GetErrorName(check_err_),                                                 \
              (check_msg_ && check_msg_[0]) ? check_msg_ : h20GetErrorString(check_err_)); \
      printf("FAIL\n");                                                                    \
      exit(EXIT_FAILURE);                                                                  \
    }                                                                                      \
  } while (0)

#endif /* H20_SAMPLE_CHECK_H_ */
