// The inference session: golden reconstruction through it, batched compression and batched
// generation equal to one-by-one, slot files that know their adapter, exports for other engines.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "icae/eval/golden_check.h"
#include "icae/infer/fingerprint.h"
#include "icae/infer/session.h"
#include "icae/infer/slot_export.h"
#include "icae/infer/slot_file.h"
#include "icae/io/model_loader.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"
#include "golden_fixture.h"
#include "test_paths.h"

using namespace icae;

namespace {

using test::to_ids;

using Golden = test::GoldenSession;
const auto load_golden = test::load_golden_session;

class SessionGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(SessionGolden, ReconstructionFromGoldenSlotsGivesTheGoldenIds) {
  Golden g = load_golden(GetParam());
  SessionOptions so;
  const auto want = to_ids(g.golden.at("ae_greedy_ids"));
  so.max_new_tokens = static_cast<int64_t>(want.size());
  Session s(g.text, g.adapter, so);
  std::vector<int64_t> streamed;
  Completion c = s.reconstruct(g.golden.at("memory_slots"), [&](int64_t id) {
    streamed.push_back(id);
    return true;
  });
  EXPECT_EQ(c.ids, want);
  EXPECT_EQ(streamed, want);
  EXPECT_EQ(c.stop_reason, "max_new_tokens");
  // And from the session's own compression of the golden context.
  at::Tensor slots = s.compress({to_ids(g.golden.at("context_ids"))}).front();
  EXPECT_LE(max_relative_error(slots, g.golden.at("memory_slots")), 1e-4);
  EXPECT_EQ(s.reconstruct(slots).ids, want);
  EXPECT_GT(s.kv_cache_bytes(), 0);
}

TEST_P(SessionGolden, BatchedCompressionAndGenerationEqualOneByOne) {
  Golden g = load_golden(GetParam());
  SessionOptions so;
  so.max_new_tokens = 20;
  Session s(g.text, g.adapter, so);
  const auto c75 = to_ids(g.golden.at("context_ids"));
  const auto c20 = to_ids(g.golden.at("context1_ids"));
  const std::vector<int64_t> c41(c75.begin() + 3, c75.begin() + 44);
  std::vector<at::Tensor> batch = s.compress({c75, c20, c41});
  ASSERT_EQ(batch.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_LE(max_relative_error(batch[i], s.compress({i == 0 ? c75 : i == 1 ? c20 : c41}).front()), 1e-5);

  // Rows of different lengths, kinds, budgets and stops.
  std::vector<DecodeRow> rows = {s.reconstruct_row(batch[0]), s.answer_row(batch[1], std::vector<int64_t>{5, 9, 11}),
                                 s.reconstruct_row(batch[2]), s.generate_row({1, 40, 41, 42, 43, 44, 45})};
  rows[1].max_new_tokens = 7;
  const Completion alone2 = s.run({rows[2]}).front();
  ASSERT_GE(alone2.ids.size(), 6u);
  rows[2].stop_ids = std::vector<int64_t>{alone2.ids[5]};  // stops at (or before) the 6th token
  std::vector<std::pair<size_t, int64_t>> streamed;
  std::vector<Completion> together = s.run(rows, [&](size_t row, int64_t id) {
    streamed.emplace_back(row, id);
    return true;
  });
  ASSERT_EQ(together.size(), rows.size());
  size_t streamed_total = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Completion alone = s.run({rows[i]}).front();
    EXPECT_EQ(together[i].ids, alone.ids) << "row " << i;
    EXPECT_EQ(together[i].stop_reason, alone.stop_reason) << "row " << i;
    streamed_total += together[i].ids.size();
  }
  EXPECT_EQ(streamed.size(), streamed_total);
  EXPECT_EQ(together[1].ids.size(), 7u);
  EXPECT_EQ(together[2].stop_reason, "stop_id");
  EXPECT_LE(together[2].ids.size(), 6u);

  // Sampled: each row has its own sampler, seeded as if alone.
  s.options().sampling.temperature = 0.9;
  s.options().sampling.seed = 3;
  together = s.run(rows);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(together[i].ids, s.run({rows[i]}).front().ids) << "row " << i;
}

// Slots as a value: what compress_slots gives decodes as its tensor does, reads back from a file
// without a model, and is refused (Mismatch) by a session of another adapter.
TEST_P(SessionGolden, SlotsKnowWhatMadeThemAndAreCheckedOnUse) {
  Golden g = load_golden(GetParam());
  Session s(g.text, g.adapter);
  const auto context = to_ids(g.golden.at("context_ids"));
  const Slots slots = s.compress_slots(std::vector<std::vector<int64_t>>{context}).front();
  EXPECT_EQ(slots.kind, SlotKind::Embedding);
  EXPECT_EQ(slots.context_tokens, static_cast<int64_t>(context.size()));
  EXPECT_EQ(slots.mem_size, s.icae().config().mem_size);
  EXPECT_EQ(s.reconstruct(slots).ids, s.reconstruct(slots.tensor).ids);
  const std::string path = ::testing::TempDir() + "session_slots_value_" + GetParam() + ".safetensors";
  save_slots(path, slots);
  const Slots back = read_slots(path);  // no model needed
  EXPECT_EQ(back.base_fingerprint, slots.base_fingerprint);
  EXPECT_EQ(s.reconstruct(back).ids, s.reconstruct(slots).ids);
  auto other = std::make_shared<LoadedAdapter>();
  other->icae = std::make_unique<Icae>(g.text->model, s.icae().config(), /*seed=*/11);
  Session t(g.text, other);
  try {
    t.reconstruct(back);
    FAIL() << "slots of another adapter were decoded";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Mismatch);
    EXPECT_NE(std::string(e.what()).find("another ICAE adapter"), std::string::npos) << e.what();
  }
}

TEST_P(SessionGolden, SlotFileRoundTripsAndRefusesAnotherAdapterOrBase) {
  Golden g = load_golden(GetParam());
  Session s(g.text, g.adapter);
  const auto context = to_ids(g.golden.at("context_ids"));
  at::Tensor slots = s.compress({context}).front();
  const std::string path = ::testing::TempDir() + "session_slots_" + GetParam() + ".safetensors";
  save_slots(path, s.icae(), slots, static_cast<int64_t>(context.size()));
  Slots back = load_slots(path, s.icae());
  EXPECT_TRUE(at::equal(back.tensor, slots));
  EXPECT_EQ(back.adapter_fingerprint, adapter_fingerprint(s.icae()));
  EXPECT_EQ(back.version, 2);

  // Another adapter on the same base (same shapes, other weights).
  Icae other(g.text->model, s.icae().config(), /*seed=*/11);
  EXPECT_NE(adapter_fingerprint(other), adapter_fingerprint(s.icae()));
  try {
    load_slots(path, other);
    FAIL() << "slots of another adapter were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Mismatch);
    EXPECT_NE(std::string(e.what()).find("another ICAE adapter"), std::string::npos) << e.what();
  }
  // Another base model.
  Golden og = load_golden(GetParam() == "tiny-llama" ? "tiny-mistral" : "tiny-llama");
  try {
    load_slots(path, *og.adapter->icae);
    FAIL() << "slots of another base were accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Mismatch);
    EXPECT_NE(std::string(e.what()).find("another base model"), std::string::npos) << e.what();
  }
  // The fingerprint does not depend on the dtype the adapter is held in.
  Icae copy(g.text->model, s.icae().config(), s.icae().lora(), s.icae().memory_embed().to(at::kBFloat16).to(at::kFloat));
  EXPECT_EQ(adapter_fingerprint(copy), adapter_fingerprint(s.icae()));
}

TEST_P(SessionGolden, ExportsTheWholeDecoderPrefixForOtherEngines) {
  Golden g = load_golden(GetParam());
  Session s(g.text, g.adapter);
  const Icae& icae = s.icae();
  at::Tensor slots = g.golden.at("memory_slots");
  PrefixExport what;
  what.kind = "ft";
  what.ft_template = s.ft_template();
  what.prompt = {7, 8, 9};
  what.prefix = ft_prefix(icae, what.ft_template, slots.size(0), what.prompt);
  what.context_tokens = 75;
  at::Tensor want = icae.decoder_embeddings(what.prefix, slots);  // [T, H]
  const int64_t t = static_cast<int64_t>(what.prefix.size()), h = icae.base().config().hidden_size;
  ASSERT_EQ(want.size(0), t);

  const std::string vpath = ::testing::TempDir() + "prefix_" + GetParam() + ".vllm.safetensors";
  export_prefix(vpath, SlotFormat::Vllm, icae, slots, what);
  TensorMap v = load_safetensors(vpath);
  ASSERT_EQ(v.count("prompt_embeds"), 1u);
  EXPECT_EQ(v.at("prompt_embeds").sizes().vec(), (std::vector<int64_t>{t, h}));
  EXPECT_EQ(v.at("prompt_embeds").scalar_type(), icae.base().dtype());
  EXPECT_TRUE(at::equal(v.at("prompt_embeds"), want));

  const std::string lpath = ::testing::TempDir() + "prefix_" + GetParam() + ".f32";
  export_prefix(lpath, SlotFormat::Llamacpp, icae, slots, what);
  std::ifstream in(lpath, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(static_cast<int64_t>(bytes.size()), t * h * 4);
  at::Tensor raw = at::from_blob(bytes.data(), {t, h}, at::kFloat);
  EXPECT_TRUE(at::equal(raw, want.to(at::kFloat)));

  std::ifstream js(lpath + ".json");
  auto j = nlohmann::json::parse(js);
  EXPECT_EQ(j.at("rows").get<int64_t>(), t);
  EXPECT_EQ(j.at("hidden_size").get<int64_t>(), h);
  EXPECT_EQ(j.at("num_slots").get<int64_t>(), 24);
  // [BOS] [24 slots] [FT] [7 8 9]
  const auto& layout = j.at("layout");
  ASSERT_EQ(layout.size(), 4u);
  EXPECT_EQ(layout[0].at("kind"), "tokens");
  EXPECT_EQ(layout[1].at("kind"), "slots");
  EXPECT_EQ(layout[1].at("count").get<int64_t>(), 24);
  EXPECT_EQ(layout[2].at("kind"), "FT");
  EXPECT_EQ(layout[3].at("ids").get<std::vector<int64_t>>(), what.prompt);

  // The decoder fed these rows gives what the session gives from the slots.
  SessionOptions so;
  so.max_new_tokens = 8;
  Session s8(g.text, g.adapter, so);
  GenerateOptions go;
  go.max_new_tokens = 8;
  EXPECT_EQ(generate(icae.base(), raw.clone(), go).ids, s8.answer(slots, what.prompt).ids);
}

INSTANTIATE_TEST_SUITE_P(Golden, SessionGolden, ::testing::Values("tiny-llama", "tiny-mistral"));

TEST(Session, WithoutAdapterGeneratesButRefusesSlots) {
  auto text = std::make_shared<TextModel>();
  text->path = "tiny-llama";
  text->model = std::make_shared<Transformer>(load_transformer(test::golden_dir("tiny-llama") + "/base", {}));
  SessionOptions so;
  so.max_new_tokens = 5;
  Session s(text, nullptr, so);
  GenerateOptions go;
  go.max_new_tokens = 5;
  EXPECT_EQ(s.generate(std::vector<int64_t>{1, 2, 3}).ids, generate_from_ids(*text->model, {1, 2, 3}, go).ids);
  EXPECT_THROW(s.reconstruct(at::zeros({8, 64})), Error);
  EXPECT_THROW(s.tokenize("text"), Error);
}

// SmolLM2 (a real model) in float32 with a fresh, untrained adapter: batched rows still equal
// one-by-one, whichever decode path (quantised single-row, dense batched) each takes.
TEST(SessionSmolLM2, BatchedGenerationEqualsOneByOne) {
  const char* env = std::getenv("ICAE_SMOLLM2_GGUF");
  std::string path = env ? env : std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::ifstream(path).good()) GTEST_SKIP() << "no " << path << " (run scripts/fetch-model)";
  auto text = std::make_shared<TextModel>(load_text_model(path, {}));
  IcaeConfig ic;
  ic.mem_size = 16;
  ic.lora.r = 8;
  auto adapter = std::make_shared<LoadedAdapter>();
  adapter->icae = std::make_unique<Icae>(text->model, ic, /*seed=*/5);
  adapter->info.chat_template = "chatml";
  SessionOptions so;
  so.max_new_tokens = 24;
  Session s(text, adapter, so);
  const std::string a = "The quick brown fox jumps over the lazy dog. It was a sunny day in the park.";
  const std::string b = "ICAE compresses a long context into a few memory slots that a frozen model reads.";
  std::vector<at::Tensor> slots = s.compress_texts({a, b});
  std::vector<DecodeRow> rows = {s.generate_row(encode_chat_prompt(*text, "What is the capital of France?")),
                                 s.answer_row(slots[0], "What did the fox do?"), s.reconstruct_row(slots[1]),
                                 s.generate_row(encode_chat_prompt(*text, "Name three colours."))};
  rows[3].max_new_tokens = 10;
  std::vector<Completion> together = s.run(rows);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Completion alone = s.run({rows[i]}).front();
    EXPECT_EQ(together[i].ids, alone.ids) << "row " << i << ": " << together[i].text << " | " << alone.text;
  }
  EXPECT_NE(together[0].text.find("Paris"), std::string::npos) << together[0].text;
}

}  // namespace
