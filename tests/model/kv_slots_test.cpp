// Key/value slots (icae/core/slot_kind.h): the golden check against the Python reference
// (tests/reference/kv_slots_golden.py), batched equal to one-by-one in compression, losses and
// decoding, the files that record the kind, and the refusals that name it.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "icae/core/adapter_file.h"
#include "icae/core/icae.h"
#include "icae/core/objectives.h"
#include "icae/eval/golden_check.h"
#include "icae/infer/decode_batch.h"
#include "icae/infer/session.h"
#include "icae/infer/slot_export.h"
#include "icae/infer/slot_file.h"
#include "icae/util/error.h"
#include "golden_fixture.h"
#include "test_paths.h"

using namespace icae;

namespace {

using test::to_ids;

std::string kv_golden_file(const std::string& name) {
  return std::string(ICAE_SOURCE_DIR) + "/tests/data/golden-kv/" + name + ".safetensors";
}

// The golden adapter's tensors read as a key/value-slot ICAE (what the reference did).
std::shared_ptr<LoadedAdapter> as_kv(const LoadedAdapter& a) {
  auto out = std::make_shared<LoadedAdapter>();
  out->icae = test::as_key_value(*a.icae);
  out->info = a.info;
  return out;
}

struct KvSession {
  test::GoldenSession g;
  std::shared_ptr<LoadedAdapter> kv;
};

KvSession load_kv(const std::string& name) {
  KvSession s{test::load_golden_session(name), nullptr};
  s.kv = as_kv(*s.g.adapter);
  return s;
}

class KvSlots : public ::testing::TestWithParam<std::string> {};

TEST_P(KvSlots, EveryGoldenTensorMatchesTheReference) {
  GoldenCheckOptions o;
  o.slot_kind = SlotKind::KeyValue;
  o.kv_golden = kv_golden_file(GetParam());
  GoldenReport r = check_golden(test::golden_dir(GetParam()), o);
  for (const auto& i : r.items) EXPECT_TRUE(i.ok) << i.name << ": error " << i.error << " > " << i.tolerance;
  EXPECT_EQ(r.items.size(), 16u);
}

TEST_P(KvSlots, SlotsHaveTheKeyValueShapeAndBatchedCompressionEqualsOneByOne) {
  KvSession s = load_kv(GetParam());
  const Icae& icae = *s.kv->icae;
  const ModelConfig& mc = icae.base().config();
  const auto c75 = to_ids(s.g.golden.at("context_ids")), c20 = to_ids(s.g.golden.at("context1_ids"));
  const std::vector<int64_t> c41(c75.begin(), c75.begin() + 41);
  at::NoGradGuard no_grad;
  const std::vector<at::Tensor> batch = icae.compress_batch({c75, c20, c41});
  EXPECT_EQ(batch[0].sizes().vec(),
            (std::vector<int64_t>{24, mc.num_hidden_layers, 2, mc.num_key_value_heads, mc.head_dim}));
  EXPECT_EQ(slot_kind_of(batch[0]), SlotKind::KeyValue);
  EXPECT_LE(max_relative_error(batch[0], icae.compress(c75)), 1e-5);
  EXPECT_LE(max_relative_error(batch[1], icae.compress(c20)), 1e-5);
  EXPECT_LE(max_relative_error(batch[2], icae.compress(c41)), 1e-5);
}

TEST_P(KvSlots, BatchedLossesEqualOneByOneWithPaddedSlotsAndTokens) {
  KvSession s = load_kv(GetParam());
  const Icae& icae = *s.kv->icae;
  const auto c75 = to_ids(s.g.golden.at("context_ids")), c20 = to_ids(s.g.golden.at("context1_ids"));
  at::NoGradGuard no_grad;
  // Rows with 24 and 8 slots, the slots first (AE) or after BOS (FT): both paddings at once.
  const at::Tensor s75 = icae.compress(c75), s20 = icae.compress(c20);
  const std::vector<std::vector<int64_t>> ids = {to_ids(s.g.golden.at("ae_prompt_answer_ids")),
                                                 to_ids(s.g.golden.at("ft_prompt_answer_ids")),
                                                 make_ae_sample(icae, c20, 2).ids};
  const std::vector<std::vector<int64_t>> labels = {to_ids(s.g.golden.at("ae_labels")),
                                                    to_ids(s.g.golden.at("ft_labels")),
                                                    make_ae_sample(icae, c20, 2).labels};
  const std::vector<at::Tensor> slots = {s75, s75, s20};
  const RowLosses together = icae.decoder_row_losses(ids, labels, slots);
  for (size_t i = 0; i < ids.size(); ++i) {
    const RowLosses alone = icae.decoder_row_losses({ids[i]}, {labels[i]}, {slots[i]});
    EXPECT_NEAR(together.sums[i].item<double>(), alone.sums[0].item<double>(), 1e-4 * std::abs(alone.sums[0].item<double>()))
        << "row " << i;
    EXPECT_EQ(together.counts[i], alone.counts[0]);
  }
}

TEST_P(KvSlots, SessionDecodingBatchedEqualsOneByOneAndTheReferenceGreedyIds) {
  KvSession s = load_kv(GetParam());
  Session session(s.g.text, s.kv);
  session.options().max_new_tokens = 16;
  session.options().use_model_stop_ids = false;
  const auto c75 = to_ids(s.g.golden.at("context_ids")), c20 = to_ids(s.g.golden.at("context1_ids"));
  const std::vector<at::Tensor> slots = session.compress({c75, c20});
  // The reference's 16 greedy ids from [slots, AE] (no stop: it ran past EOS).
  const TensorMap ref = load_safetensors(kv_golden_file(GetParam()));
  EXPECT_EQ(session.reconstruct(slots[0]).ids, to_ids(ref.at("ae_greedy_ids")));

  // Different slot counts, slots first or after the template: one batch equals each row alone.
  std::vector<DecodeRow> rows = {session.reconstruct_row(slots[0]),
                                 session.answer_row(slots[1], std::vector<int64_t>{5, 9, 11}),
                                 session.reconstruct_row(slots[1]), session.generate_row({1, 40, 41, 42})};
  rows[1].max_new_tokens = 7;
  const std::vector<Completion> together = session.run(rows);
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(together[i].ids, session.run({rows[i]}).front().ids) << "row " << i;

  // The continuous-batching decoder (the server's) gives the same.
  DecodeBatch batch(session, {});
  std::vector<uint64_t> handles;
  for (const auto& r : rows) handles.push_back(batch.join(r, session.options().sampling));
  std::vector<Completion> streamed(rows.size());
  auto collect = [&] {
    for (auto& f : batch.take_finished())
      for (size_t i = 0; i < handles.size(); ++i)
        if (handles[i] == f.handle) streamed[i] = f.completion;
  };
  collect();
  while (batch.running() > 0) {
    batch.step();
    collect();
  }
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(streamed[i].ids, together[i].ids) << "row " << i;
}

TEST_P(KvSlots, FilesRecordTheKindAndRefuseTheOther) {
  KvSession s = load_kv(GetParam());
  const Icae& kv = *s.kv->icae;
  const Icae& emb = *s.g.adapter->icae;
  const auto c20 = to_ids(s.g.golden.at("context1_ids"));
  at::NoGradGuard no_grad;
  const std::string dir = ::testing::TempDir();
  // Adapter: the header records the kind; it loads back as key/value slots.
  const std::string adapter = dir + "kv_adapter_" + GetParam() + ".safetensors";
  save_adapter(adapter, kv, {});
  LoadedAdapter back = load_adapter(adapter, s.g.text->model);
  EXPECT_EQ(back.icae->config().slot_kind, SlotKind::KeyValue);
  EXPECT_LE(max_relative_error(back.icae->compress(c20), kv.compress(c20)), 1e-6);
  // Slot files: round trip, and an adapter of the other kind refuses them by kind.
  const std::string file = dir + "kv_slots_" + GetParam() + ".safetensors";
  const at::Tensor slots = kv.compress(c20);
  save_slots(file, kv, slots, static_cast<int64_t>(c20.size()));
  EXPECT_TRUE(at::equal(load_slots(file, *back.icae).tensor, slots));
  try {
    load_slots(file, emb);
    FAIL() << "key/value slots were accepted by an embedding-slot adapter";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Mismatch);
  }
  // Decoding the other kind's slots names the kinds.
  try {
    kv.decoder_input({ae_prefix(kv, 8)}, {emb.compress(c20)}, Padding::Right);
    FAIL() << "embedding slots were decoded as key/value slots";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("key/value slots"), std::string::npos) << e.what();
  }
  // vLLM / llama.cpp prefixes carry embeddings: refused, saying why.
  PrefixExport what;
  what.prefix = ae_prefix(kv, slots.size(0));
  try {
    export_prefix(dir + "kv.vllm.safetensors", SlotFormat::Vllm, kv, slots, what);
    FAIL() << "key/value slots were exported as prompt embeddings";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("keys and values"), std::string::npos) << e.what();
  }
}

TEST_P(KvSlots, SpreadMemoryPositionsChangeTheSlotsAndAreRecorded) {
  KvSession s = load_kv(GetParam());
  const auto c75 = to_ids(s.g.golden.at("context_ids")), c20 = to_ids(s.g.golden.at("context1_ids"));
  for (SlotKind kind : {SlotKind::Embedding, SlotKind::KeyValue}) {
    const Icae& after = kind == SlotKind::KeyValue ? *s.kv->icae : *s.g.adapter->icae;
    IcaeConfig c = after.config();
    c.spread_memory_positions = true;
    Icae spread(s.g.text->model, c, after.lora(), after.memory_embed(), after.projector());
    at::NoGradGuard no_grad;
    // Other positions, other slots; the first memory token of a 20-token segment sits at 20 / 8 - 1
    // rounded up = 2, not 20.
    EXPECT_GT(max_relative_error(spread.compress(c20), after.compress(c20)), 1e-3) << slot_kind_name(kind);
    const std::vector<at::Tensor> batch = spread.compress_batch({c75, c20});
    EXPECT_LE(max_relative_error(batch[0], spread.compress(c75)), 1e-5);
    EXPECT_LE(max_relative_error(batch[1], spread.compress(c20)), 1e-5);
    const std::string path = ::testing::TempDir() + "spread_" + GetParam() + ".safetensors";
    save_adapter(path, spread, {});
    LoadedAdapter back = load_adapter(path, s.g.text->model);
    EXPECT_TRUE(back.icae->config().spread_memory_positions);
    EXPECT_LE(max_relative_error(back.icae->compress(c20), spread.compress(c20)), 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, KvSlots, ::testing::Values("tiny-llama", "tiny-mistral"));

}  // namespace
