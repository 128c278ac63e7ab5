// icae._C: the C++ engine for the Python package (python/icae). See bindings.h.
#include "bindings.h"

#include <exception>

#include "icae/util/error.h"

namespace icae::python {

// icae::Error arrives as the class of icae/_errors.py named after its ErrorKind (icae.BadInput,
// icae.Mismatch, ...), all subclasses of icae.Error, with the same message.
void bind_errors(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      const char* name = "Internal";
      switch (e.kind()) {
        case ErrorKind::Usage: name = "Usage"; break;
        case ErrorKind::BadInput: name = "BadInput"; break;
        case ErrorKind::Io: name = "Io"; break;
        case ErrorKind::Mismatch: name = "Mismatch"; break;
        case ErrorKind::Unsupported: name = "Unsupported"; break;
        case ErrorKind::Internal: name = "Internal"; break;
      }
      py::object cls = py::module_::import("icae._errors").attr(name);
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
}

}  // namespace icae::python

PYBIND11_MODULE(_C, m) {
  m.doc() = "icae's C++ engine; use the package icae, not this module.";
  m.attr("__version__") = ICAE_VERSION;
  icae::python::bind_errors(m);
  icae::python::bind_model(m);
  icae::python::bind_training(m);
}
