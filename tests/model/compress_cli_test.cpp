// icae compress --format vllm|llamacpp from the command line (SmolLM2, a fresh adapter): the
// files hold exactly the decoder prefix the session would feed the base model, and a slot file
// made by one adapter is refused by `icae ask` with another.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "icae/infer/session.h"
#include "icae/io/tensor_io.h"
#include "test_paths.h"

using namespace icae;
namespace fs = std::filesystem;

namespace {

int run(const std::string& args) { return std::system((std::string(ICAE_CLI_PATH) + " " + args + " >/dev/null 2>&1").c_str()); }

std::string smollm2_path() {
  const char* env = std::getenv("ICAE_SMOLLM2_GGUF");
  return env ? env : std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
}

const char* const kDocText =
    "A short document about memory slots, compressed by an in-context autoencoder for a frozen model.";

// A temporary folder with two fresh adapters of SmolLM2 (k 8, r 4, chatml; seeds 1 and 2) and a
// short document, for the command-line tests.
struct CliFixture {
  fs::path dir;
  std::shared_ptr<TextModel> text;
  std::string a1, a2, doc;
  CliFixture(const std::string& model, const std::string& name, const std::string& a1_name,
             const std::string& a2_name) {
    dir = fs::path(::testing::TempDir()) / (name + "_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    text = std::make_shared<TextModel>(load_text_model(model, {}));
    IcaeConfig ic;
    ic.mem_size = 8;
    ic.lora.r = 4;
    AdapterInfo info;
    info.chat_template = "chatml";
    a1 = (dir / a1_name).string();
    a2 = (dir / a2_name).string();
    save_adapter(a1, Icae(text->model, ic, 1), info);
    save_adapter(a2, Icae(text->model, ic, 2), info);
    doc = (dir / "doc.txt").string();
    std::ofstream(doc) << kDocText;
  }
};

TEST(CompressCli, EngineExportsHoldTheSessionsPrefixAndSlotFilesKnowTheirAdapter) {
  const std::string model = smollm2_path();
  if (!std::ifstream(model).good()) GTEST_SKIP() << "no " << model << " (run scripts/fetch-model)";
  const CliFixture f(model, "icae_compress_cli", "a1.safetensors", "a2.safetensors");
  const fs::path& dir = f.dir;
  const auto& text = f.text;
  const std::string &a1 = f.a1, &a2 = f.a2, &doc = f.doc;
  const std::string common = " --model " + model + " --context " + doc + " --threads 1";

  ASSERT_EQ(run("compress --adapter " + a1 + common + " --format vllm --prompt \"What is it about?\" -o " +
                (dir / "p.safetensors").string()), 0);
  ASSERT_EQ(run("compress --adapter " + a1 + common + " --format llamacpp -o " + (dir / "p.f32").string()), 0);
  ASSERT_EQ(run("compress --adapter " + a1 + common + " -o " + (dir / "s.safetensors").string()), 0);

  auto adapter = std::make_shared<LoadedAdapter>(load_adapter(a1, text->model));
  Session s(text, adapter);
  at::Tensor slots = s.compress(std::string(kDocText));
  // vllm: the whole FT prefix with the prompt, in the model's dtype.
  DecodeRow row = s.answer_row(slots, "What is it about?");
  at::Tensor want = s.icae().decoder_embeddings(row.prefix, slots);
  at::Tensor got = load_safetensors((dir / "p.safetensors").string()).at("prompt_embeds");
  ASSERT_EQ(got.sizes(), want.sizes());
  EXPECT_LE((got - want).abs().max().item<double>(), 1e-4 * want.abs().max().item<double>());
  // llamacpp without a prompt: the prefix up to FT; the JSON says what to append after the prompt.
  auto j = nlohmann::json::parse(std::ifstream((dir / "p.f32.json").string()));
  const FtTemplate t = s.ft_template();
  const int64_t rows = static_cast<int64_t>(t.before.size()) + slots.size(0) + 1;
  EXPECT_EQ(j.at("rows").get<int64_t>(), rows);
  EXPECT_EQ(static_cast<int64_t>(fs::file_size(dir / "p.f32")), rows * 576 * 4);
  EXPECT_EQ(j.at("append_after_prompt").get<std::vector<int64_t>>(), t.after);
  EXPECT_EQ(j.at("layout").back().at("kind"), "FT");
  // The slot file answers with its own adapter and is refused by another (exit 5: mismatch).
  const std::string ask = " --model " + model + " --slots " + (dir / "s.safetensors").string() + " -p hi -n 2 --threads 1";
  EXPECT_EQ(run("ask --adapter " + a1 + ask), 0);
  const int refused = run("ask --adapter " + a2 + ask);
  ASSERT_TRUE(WIFEXITED(refused));
  EXPECT_EQ(WEXITSTATUS(refused), 5);
}

// icae demo with two adapters, as scripts/demo runs the bundled ones: --adapter reconstructs,
// --qa-adapter answers from its own slots of the passage. Fresh adapters: only the plumbing.
TEST(DemoCli, ReconstructsWithOneAdapterAndAnswersWithTheOther) {
  const std::string model = smollm2_path();
  if (!std::ifstream(model).good()) GTEST_SKIP() << "no " << model << " (run scripts/fetch-model)";
  const CliFixture f(model, "icae_demo_cli", "ae.safetensors", "qa.safetensors");
  const fs::path& dir = f.dir;
  const std::string &a1 = f.a1, &a2 = f.a2, &doc = f.doc;
  const std::string out = (dir / "out.txt").string();
  const std::string cmd = std::string(ICAE_CLI_PATH) + " demo --model " + model + " --adapter " + a1 +
                          " --qa-adapter " + a2 + " --file " + doc + " -q \"What is it about?\" -n 3 --threads 1";
  ASSERT_EQ(std::system((cmd + " >" + out + " 2>&1").c_str()), 0);
  std::stringstream shown;
  shown << std::ifstream(out).rdbuf();
  EXPECT_NE(shown.str().find("answers: " + a2), std::string::npos) << shown.str();
  EXPECT_NE(shown.str().find("from slots:"), std::string::npos) << shown.str();
  EXPECT_NE(shown.str().find("ICAE (slots):"), std::string::npos) << shown.str();
  // A missing answering adapter is a clear error, not a demo without answers.
  const int bad = std::system((std::string(ICAE_CLI_PATH) + " demo --model " + model + " --adapter " + a1 +
                               " --qa-adapter " + (dir / "missing.safetensors").string() + " --file " + doc +
                               " >/dev/null 2>&1").c_str());
  ASSERT_TRUE(WIFEXITED(bad));
  EXPECT_NE(WEXITSTATUS(bad), 0);
}

}  // namespace
