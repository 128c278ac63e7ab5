// What the files of the extension icae._C share: how C++ work runs under Python (the GIL
// released, Ctrl-C and exceptions from Python callbacks carried across), and the parts each file
// adds to the module. The Python-facing API (docstrings, keyword arguments, progress bars,
// streaming) is python/icae/*.py; this layer stays thin.
#pragma once
#include <torch/csrc/utils/pybind.h>

#include <memory>
#include <optional>
#include <utility>

namespace icae::python {

namespace py = pybind11;

// Runs `work` with the GIL released. Callbacks made during it call `check()` (with or without a
// Python callable to run) to see Ctrl-C and to carry a Python exception out: the first one is
// kept, the C++ work is told to stop (check returns false), and rethrow() raises it once the
// work has returned.
class PythonBridge {
 public:
  // Runs fn(args...) under the GIL; returns false when it raised or a signal is pending. Only
  // when `fn` is set is its result looked at: a False from it means stop, anything else go on.
  template <typename... Args>
  bool call(const py::object& fn, Args&&... args) {
    py::gil_scoped_acquire gil;
    if (error_) return false;
    try {
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      if (fn && !fn.is_none()) {
        py::object r = fn(std::forward<Args>(args)...);
        if (r.ptr() == Py_False) return false;
      }
      return true;
    } catch (py::error_already_set& e) {
      error_ = std::make_unique<py::error_already_set>(std::move(e));
      return false;
    }
  }
  bool check() { return call(py::object()); }
  bool failed() const { return error_ != nullptr; }
  // Call with the GIL held, after the work.
  void rethrow() {
    if (error_) {
      std::unique_ptr<py::error_already_set> e = std::move(error_);
      throw std::move(*e);
    }
  }

  template <typename F>
  auto run(F&& work) {
    using R = decltype(work());
    if constexpr (std::is_void_v<R>) {
      {
        py::gil_scoped_release nogil;
        work();
      }
      rethrow();
    } else {
      std::optional<R> result;
      {
        py::gil_scoped_release nogil;
        result.emplace(work());
      }
      rethrow();
      return std::move(*result);
    }
  }

 private:
  std::unique_ptr<py::error_already_set> error_;
};

void bind_errors(py::module_& m);
void bind_model(py::module_& m);
void bind_training(py::module_& m);

}  // namespace icae::python
