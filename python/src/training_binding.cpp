// Training, the command line and the golden check from Python. Training goes through the CLI's own
// command (tools/icae/cmd_train.cpp via cli_entry), so icae.pretrain(k=32, max_context=128, ...)
// takes exactly `icae pretrain`'s options with its defaults and checks; a record observer
// (train/trainer.h) feeds Python's callback and progress bar.
#include <pybind11/stl.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bindings.h"
#include "cli_entry.h"
#include "icae/eval/golden_check.h"
#include "icae/train/trainer.h"
#include "icae/util/device.h"
#include "icae/util/error.h"

namespace icae::python {

namespace {

// JSON (a record) as Python objects, through the json module: records are small.
py::object to_python(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

// Runs a CLI command line in this process. Usage and command errors raise icae's exceptions;
// `on_record(dict) -> bool|None` sees every training record (False stops the run after saving).
// Returns (exit code, whether a stop was requested: a signal or the observer).
std::pair<int, bool> run_cli(const std::vector<std::string>& args, const py::object& on_record) {
  PythonBridge bridge;
  std::unique_ptr<train::ObserveRecords> observe;
  if (!on_record.is_none())
    observe = std::make_unique<train::ObserveRecords>(
        [&](const nlohmann::json& record) {
          // The GIL is taken inside call(); converting the record needs it too.
          py::gil_scoped_acquire gil;
          return bridge.call(on_record, to_python(record));
        });
  const int code = bridge.run([&] { return cli::run(args, /*rethrow=*/true); });
  return {code, train::stop_was_requested()};
}

py::dict check_golden(const std::string& dir, const std::string& slot_kind, const std::string& kv_golden,
                      const std::string& device, const std::string& dtype) {
  GoldenCheckOptions o;  // empty strings keep its defaults
  if (!device.empty()) o.device = parse_device(device);
  if (!dtype.empty()) o.dtype = parse_dtype(resolve_auto_dtype(dtype, o.device));
  if (!slot_kind.empty()) o.slot_kind = parse_slot_kind(slot_kind);
  o.kv_golden = kv_golden;
  GoldenReport r;
  {
    py::gil_scoped_release nogil;
    r = icae::check_golden(dir, o);
  }
  py::list items;
  for (const auto& i : r.items) {
    py::dict d;
    d["name"] = i.name;
    d["error"] = i.error;
    d["tolerance"] = i.tolerance;
    d["ok"] = i.ok;
    d["detail"] = i.detail;
    items.append(d);
  }
  py::dict out;
  out["ok"] = r.ok();
  out["items"] = items;
  return out;
}

}  // namespace

void bind_training(py::module_& m) {
  m.def("run_cli", &run_cli, py::arg("args"), py::arg("on_record") = py::none());
  m.def("cli_help", &cli::help, py::arg("command"));
  m.def("check_golden", &check_golden, py::arg("dir"), py::arg("slot_kind"), py::arg("kv_golden"), py::arg("device"),
        py::arg("dtype"));
}

}  // namespace icae::python
