// Continuous batching: rows that join a running decode batch between steps, and leave it at their
// own stop id or budget, get the tokens they get alone. Transformer::decode_rows (one token for
// each of several rows, each with its own cache) equals forward() row by row: bitwise on the
// quantised CPU path (SmolLM2's GGUF), to float rounding on the ATen path (the tiny goldens).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "icae/api.h"
#include "icae/infer/decode_batch.h"
#include "icae/infer/session.h"
#include "icae/io/model_loader.h"
#include "icae/model/kv_cache.h"
#include "golden_fixture.h"
#include "test_paths.h"

using namespace icae;

namespace {

using test::to_ids;

using Golden = test::GoldenSession;
const auto load_golden = test::load_golden_session;

const std::string kSmolLM2 = std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

// Prefills ids into a fresh cache of one row; returns the cache.
std::unique_ptr<KVCache> prefilled(const Transformer& m, const std::vector<int64_t>& ids, int64_t room) {
  KVCacheOptions o;
  o.max_length = static_cast<int64_t>(ids.size()) + room;
  o.dtype = m.dtype();
  auto cache = std::make_unique<KVCache>(m.config(), o);
  ForwardOptions fo;
  fo.cache = cache.get();
  m.forward({at::tensor(ids, at::kLong).unsqueeze(0)}, fo);
  return cache;
}

// decode_rows over rows of different lengths vs forward() of each row's token alone.
void expect_rows_equal_alone(const Transformer& m, bool bitwise) {
  at::NoGradGuard no_grad;
  std::vector<std::vector<int64_t>> prompts = {{1, 504, 3458}, {1, 28, 1390, 17, 282, 4649, 314}, {1, 253}};
  std::vector<int64_t> next = {30, 12, 99};
  const int64_t vocab = m.config().vocab_size;  // the tiny models have 512 ids
  for (auto& p : prompts)
    for (auto& id : p) id %= vocab;
  std::vector<std::unique_ptr<KVCache>> together, alone;
  std::vector<KVCache*> rows;
  for (const auto& p : prompts) {
    together.push_back(prefilled(m, p, 4));
    alone.push_back(prefilled(m, p, 4));
    rows.push_back(together.back().get());
  }
  for (int step = 0; step < 3; ++step) {
    at::Tensor batched = m.decode_rows(next, rows);  // [3, V]
    ASSERT_EQ(batched.size(0), 3);
    for (size_t r = 0; r < prompts.size(); ++r) {
      ForwardOptions fo;
      fo.cache = alone[r].get();
      fo.last_position_only = true;
      at::Tensor single = m.forward({at::full({1, 1}, next[r], at::kLong)}, fo).logits.view({-1});
      if (bitwise)
        EXPECT_TRUE(at::equal(batched[static_cast<int64_t>(r)], single)) << "row " << r << ", step " << step;
      else
        EXPECT_TRUE(at::allclose(batched[static_cast<int64_t>(r)], single, 1e-5, 1e-5)) << "row " << r << ", step " << step;
      EXPECT_EQ(together[r]->length(), alone[r]->length());
    }
  }
}

}  // namespace

TEST(DecodeRows, QuantisedRowsOfDifferentLengthsEqualThemAloneBitwise) {
  if (!std::filesystem::exists(kSmolLM2)) GTEST_SKIP() << "run scripts/fetch-model first";
  ModelLoadOptions o;
  o.quantized_decode = ModelLoadOptions::QuantDecode::On;  // also where Auto would keep it dense
  Transformer m = load_transformer(kSmolLM2, o);
  ASSERT_TRUE(m.has_quantized());
  expect_rows_equal_alone(m, /*bitwise=*/true);
}

TEST(DecodeRows, DenseRowsOfDifferentLengthsEqualThemAlone) {
  const std::string dir = test::golden_dir("tiny-llama");
  Transformer m = load_transformer(dir + "/base", {});
  ASSERT_FALSE(m.has_quantized());
  expect_rows_equal_alone(m, /*bitwise=*/false);
}

class DecodeBatchGolden : public ::testing::TestWithParam<std::string> {};

// Rows join while others decode (after 0, 3 and 5 steps), of different kinds, lengths, budgets,
// stops and sampling settings; each leaves at its own end and equals its decode alone.
TEST_P(DecodeBatchGolden, RowsThatJoinAndLeaveMidDecodeEqualTheirDecodeAlone) {
  Golden g = load_golden(GetParam());
  SessionOptions so;
  so.max_new_tokens = 20;
  Session s(g.text, g.adapter, so);
  at::NoGradGuard no_grad;
  const auto c75 = to_ids(g.golden.at("context_ids"));
  const auto c20 = to_ids(g.golden.at("context1_ids"));
  std::vector<at::Tensor> slots = s.compress({c75, c20});
  std::vector<DecodeRow> rows = {s.reconstruct_row(slots[0]), s.answer_row(slots[1], std::vector<int64_t>{5, 9, 11}),
                                 s.generate_row({1, 40, 41, 42, 43, 44, 45}), s.reconstruct_row(slots[1])};
  rows[1].max_new_tokens = 7;
  const Completion alone3 = s.run({rows[3]}).front();
  ASSERT_GE(alone3.ids.size(), 6u);
  rows[3].stop_ids = std::vector<int64_t>{alone3.ids[4]};  // stops at (or before) its 5th token
  std::vector<SamplingOptions> sampling(rows.size());
  sampling[2].temperature = 0.9;
  sampling[2].seed = 3;

  std::vector<Completion> want;
  for (size_t i = 0; i < rows.size(); ++i) {
    s.options().sampling = sampling[i];
    want.push_back(s.run({rows[i]}).front());
  }
  s.options().sampling = SamplingOptions{};

  DecodeBatch batch(s);
  const std::map<int, size_t> joins = {{0, 0}, {3, 1}, {5, 2}, {6, 3}};  // step -> row
  std::map<uint64_t, size_t> row_of;
  std::map<size_t, int> joined_at, left_at;
  std::map<size_t, Completion> got;
  std::map<size_t, std::vector<int64_t>> streamed;
  for (int step = 0; step < 100 && (step <= 6 || batch.running() > 0); ++step) {
    if (joins.count(step)) {
      const size_t i = joins.at(step);
      row_of[batch.join(rows[i], sampling[i], [&streamed, i](int64_t id) {
        streamed[i].push_back(id);
        return true;
      })] = i;
      joined_at[i] = step;
    }
    if (step == 3) EXPECT_EQ(batch.running(), 2u) << "row 1 joined row 0 while it decoded";
    batch.step();
    for (auto& f : batch.take_finished()) {
      const size_t i = row_of.at(f.handle);
      got[i] = f.completion;
      left_at[i] = step;
    }
  }
  ASSERT_EQ(got.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(got[i].ids, want[i].ids) << "row " << i;
    EXPECT_EQ(got[i].stop_reason, want[i].stop_reason) << "row " << i;
    EXPECT_EQ(got[i].prefix_tokens, want[i].prefix_tokens) << "row " << i;
    EXPECT_EQ(streamed[i], want[i].ids) << "row " << i;
    // Its first token comes from the join, one more from each step after: a row leaves at the
    // step that gives its last token (at its join when that was the only one).
    EXPECT_EQ(left_at[i], joined_at[i] + std::max(0, static_cast<int>(got[i].ids.size()) - 2)) << "row " << i;
  }
  EXPECT_EQ(got[1].ids.size(), 7u);
  EXPECT_EQ(got[3].stop_reason, "stop_id");
  EXPECT_EQ(batch.running(), 0u);
  EXPECT_EQ(batch.kv_bytes(), 0);
}

TEST_P(DecodeBatchGolden, AnEndedRowLeavesWithItsReasonAndTheOthersGoOn) {
  Golden g = load_golden(GetParam());
  SessionOptions so;
  so.max_new_tokens = 12;
  Session s(g.text, g.adapter, so);
  at::NoGradGuard no_grad;
  const DecodeRow a = s.generate_row({1, 40, 41, 42}), b = s.generate_row({1, 7, 8});
  const Completion want_b = s.run({b}).front();
  DecodeBatch batch(s);
  const uint64_t ha = batch.join(a, {});
  const uint64_t hb = batch.join(b, {});
  batch.step();
  EXPECT_GT(batch.kv_bytes(), 0);
  batch.end(ha, "cancelled");
  EXPECT_EQ(batch.running(), 1u);
  while (batch.running() > 0) batch.step();
  std::map<uint64_t, Completion> got;
  for (auto& f : batch.take_finished()) got[f.handle] = f.completion;
  EXPECT_EQ(got.at(ha).stop_reason, "cancelled");
  EXPECT_EQ(got.at(ha).ids.size(), 2u);
  EXPECT_EQ(got.at(hb).ids, want_b.ids);
  // A row with no budget finishes at once, without a prefill.
  DecodeRow none = s.generate_row({1, 2});
  none.max_new_tokens = 0;
  const uint64_t hn = batch.join(none, {});
  EXPECT_EQ(batch.running(), 0u);
  auto f = batch.take_finished();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].handle, hn);
  EXPECT_TRUE(f[0].completion.ids.empty());
}

// Compress once, ask many: the second question about the same slots copies the kept keys and
// values of [template head, slots] and prefills only its prompt; its tokens equal those with the
// cache off and those of Session::run. Other slots miss; a byte bound of 0 keeps nothing.
TEST_P(DecodeBatchGolden, QuestionsAboutTheSameSlotsReuseTheirPrefix) {
  Golden g = load_golden(GetParam());
  SessionOptions so;
  so.max_new_tokens = 10;
  Session s(g.text, g.adapter, so);
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> slots = s.compress({to_ids(g.golden.at("context_ids")), to_ids(g.golden.at("context1_ids"))});
  const std::vector<DecodeRow> rows = {s.answer_row(slots[0], std::vector<int64_t>{5, 9, 11}),
                                       s.answer_row(slots[0], std::vector<int64_t>{12, 7}),
                                       s.reconstruct_row(slots[0]), s.answer_row(slots[1], std::vector<int64_t>{5, 9, 11})};
  auto decode_all = [&](DecodeBatch& batch) {
    std::vector<Completion> out;
    for (const DecodeRow& row : rows) {
      const uint64_t h = batch.join(row, {});
      while (batch.running() > 0) batch.step();
      for (auto& f : batch.take_finished())
        if (f.handle == h) out.push_back(f.completion);
    }
    return out;
  };
  DecodeBatch cached(s);
  DecodeBatchOptions off;
  off.prefix_cache_bytes = 0;
  DecodeBatch uncached(s, off);
  const std::vector<Completion> a = decode_all(cached), b = decode_all(uncached);
  ASSERT_EQ(a.size(), rows.size());
  ASSERT_EQ(b.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(a[i].ids, b[i].ids) << "row " << i;
    EXPECT_EQ(a[i].ids, s.run({rows[i]}).front().ids) << "row " << i;
    EXPECT_EQ(a[i].prefix_tokens, b[i].prefix_tokens) << "row " << i;
  }
  // Rows 0 and 1 share [head, slots 0]; the reconstruction's layout has no template head, so it
  // is its own prefix; row 3 has other slots.
  EXPECT_EQ(cached.prefix_misses() + cached.prefix_hits(), 4);
  EXPECT_GE(cached.prefix_hits(), 1);
  EXPECT_GT(cached.prefix_cache_bytes(), 0);
  EXPECT_EQ(uncached.prefix_hits(), 0);
  EXPECT_EQ(uncached.prefix_cache_bytes(), 0);
  // The same rows again: every prefix is kept now.
  const int64_t hits = cached.prefix_hits();
  decode_all(cached);
  EXPECT_EQ(cached.prefix_hits(), hits + 4);
}

INSTANTIATE_TEST_SUITE_P(Models, DecodeBatchGolden, ::testing::Values("tiny-llama", "tiny-mistral"));
