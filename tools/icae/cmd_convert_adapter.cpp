// icae convert-adapter: re-save an adapter, e.g. in bf16 for distribution (half the size of the
// float32 file a training run writes), keeping its header (base fingerprint, template, training
// record). The adapter is loaded against its base model first, so a file that does not fit
// that base is refused here rather than by its users.
#include <cstdio>
#include <memory>

#include "command.h"
#include "common.h"
#include "icae/core/adapter_file.h"
#include "icae/infer/text_model.h"
#include "icae/util/device.h"
#include "icae/util/error.h"

namespace {

using namespace icae;

struct ConvertArgs : cli::ModelOptions {
  std::string out, dtype = "bf16", notes;  // --dtype: the stored one (no run options: nothing runs)
};

void run_convert(const ConvertArgs& a) {
  ICAE_CHECK(a.out != a.adapter, ErrorKind::Usage, "--out must differ from --adapter");
  TextModelOptions o;
  TextModel m = load_text_model(a.model, o);
  LoadedAdapter loaded = load_adapter(a.adapter, m.model);
  ICAE_CHECK(!loaded.released_layout, ErrorKind::Unsupported,
             a.adapter + ": a released (original-layout) checkpoint; convert-adapter writes only icae's own layout");
  AdapterInfo info = loaded.info;
  info.store_dtype = parse_dtype(a.dtype);
  if (!a.notes.empty()) info.notes = a.notes;
  save_adapter(a.out, *loaded.icae, info);
  std::fprintf(stderr, "icae convert-adapter: wrote %s (%s)\n", a.out.c_str(), a.dtype.c_str());
}

void setup_convert(CLI::App& root) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* c = root.add_subcommand("convert-adapter",
                                    "Re-save an ICAE adapter in another dtype (e.g. bf16 to ship it), header kept.\n"
                                    "Example: icae convert-adapter --model M.gguf --adapter run/adapter.safetensors "
                                    "--out demo.safetensors");
  cli::ModelOptionsUse use;
  use.adapter = cli::AdapterUse::Required;
  use.adapter_note = "the one to convert";
  use.run = false;
  cli::add_model_options(c, *a, use);
  c->add_option("--out,-o", a->out, "The file to write")->required();
  c->add_option("--dtype", a->dtype, "Stored dtype of the tensors")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  c->add_option("--notes", a->notes, "Replace the adapter's notes (free text)");
  c->callback([a] { run_convert(*a); });
}

}  // namespace

ICAE_COMMAND(setup_convert);
