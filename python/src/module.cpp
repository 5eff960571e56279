// module.cpp - the extension module h20._h20, imported by the h20 package (python/h20).
//
// The package's Python files re-export what is bound here and add the error classes
// (h20/_errors.py) and the conversions to NumPy and PyTorch (h20/_interop.py).
#include "common.hpp"

PYBIND11_MODULE(_h20, m) {
  m.doc() = "H20 SDK bindings (the public C API of libh20rt, libh20kernels and libh20ccl).";
  h20py::initRuntime(m);
  h20py::initArray(m);
  h20py::initKda(m);
  h20py::initCcl(m);
}
