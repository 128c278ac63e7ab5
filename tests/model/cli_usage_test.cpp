// The command line as a new user meets it: every usage error (unknown command, missing or bad
// option, out-of-range number, extra argument) names the problem and exits 2; --help and
// --version exit 0. Nothing here loads a model: usage is checked before any command runs.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace {

struct CliResult {
  int status = -1;
  std::string output;  // stdout and stderr together
};

CliResult run(const std::string& args) {
  const std::string cmd = std::string(ICAE_CLI_PATH) + " " + args + " 2>&1 </dev/null";
  CliResult r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Expects exit status 2 and a message containing each of `needles`.
void expect_usage(const std::string& args, std::initializer_list<const char*> needles) {
  const CliResult r = run(args);
  EXPECT_EQ(r.status, 2) << "icae " << args << "\n" << r.output;
  for (const char* needle : needles)
    EXPECT_NE(r.output.find(needle), std::string::npos) << "icae " << args << ": no '" << needle << "' in\n" << r.output;
}

// A model path that does not exist: were the options accepted, the run would fail with 4 (I/O).
const std::string kModel = "--model /nonexistent/model.gguf";

TEST(CliUsage, HelpAndVersionExitZero) {
  EXPECT_EQ(run("--help").status, 0);
  EXPECT_EQ(run("generate --help").status, 0);
  const CliResult v = run("--version");
  EXPECT_EQ(v.status, 0);
  EXPECT_NE(v.output.find("icae 0.1.0"), std::string::npos) << v.output;
}

TEST(CliUsage, UnknownOrMissingCommand) {
  expect_usage("", {"icae: error: no command given; commands: ", "generate", "tokenize"});
  expect_usage("\"\"", {"icae: error: unknown command ''; commands: "});
  expect_usage("foo", {"icae: error: unknown command 'foo'; commands: ", "generate, chat"});
  expect_usage("genrate --model m", {"unknown command 'genrate' (did you mean 'generate'?)"});
  expect_usage("--bogus", {"icae: error: unknown option '--bogus' before the command", "commands: "});
}

TEST(CliUsage, MissingRequiredOptionNamesIt) {
  expect_usage("forward --ids 1", {"icae forward: error: --model is required", "icae forward --help"});
  expect_usage("generate", {"icae generate: error: --model is required"});
  expect_usage("tokenize", {"icae tokenize: error: --tokenizer is required"});
  expect_usage("check-golden", {"icae check-golden: error: dir is required"});
  expect_usage("compress " + kModel + " --adapter a.safetensors", {"--out"});
}

TEST(CliUsage, ExtraArgumentsAreRefused) {
  expect_usage("tokenize --tokenizer t.json stray", {"icae tokenize: error: ", "stray"});
  expect_usage("forward " + kModel + " --ids 1 --no-such-option", {"--no-such-option"});
}

TEST(CliUsage, BadValuesAreRefused) {
  expect_usage("forward " + kModel + " --ids 1 --threads abc", {"icae forward: error: ", "--threads"});
  expect_usage("forward " + kModel + " --ids 1 --dtype f8", {"--dtype", "f8"});
  expect_usage("forward " + kModel + " --ids 1 --top 1.5x", {"--top"});
}

TEST(CliUsage, NumbersAreRangeChecked) {
  expect_usage("forward " + kModel + " --ids 1 --threads -3", {"--threads", "-3"});
  expect_usage("forward " + kModel + " --ids 1 --threads 100000", {"--threads"});
  expect_usage("forward " + kModel + " --ids 1 --top 0", {"--top"});
  expect_usage("generate " + kModel + " -n -1", {"--max-new-tokens"});
  expect_usage("generate " + kModel + " --temperature -0.5", {"--temperature"});
  expect_usage("generate " + kModel + " --top-k -2", {"--top-k"});
  expect_usage("generate " + kModel + " --top-p 0", {"--top-p", "(0, 1]"});
  expect_usage("generate " + kModel + " --top-p 1.5", {"--top-p", "(0, 1]"});
  expect_usage("chat " + kModel + " --seed -1", {"--seed"});
  expect_usage("generate " + kModel + " --repetition-penalty 0", {"--repetition-penalty"});
  expect_usage("ask " + kModel + " --adapter a --no-repeat-ngram -1", {"--no-repeat-ngram"});
  expect_usage("eval ae --model m --adapter a --data d --no-repeat-ngram -2", {"--no-repeat-ngram"});
  expect_usage("demo --model m --adapter a --repetition-penalty -1", {"--repetition-penalty"});
  expect_usage("ask " + kModel + " --adapter a -n -5", {"--max-new-tokens"});
  expect_usage("ask " + kModel + " --adapter a --lora-alpha -1", {"--lora-alpha"});
  expect_usage("params --config c.json --mem-size 0", {"--mem-size"});
  expect_usage("params --config c.json -r -4", {"--lora-r"});
  // In range, the same options pass usage checks and the run fails on the missing file instead.
  EXPECT_EQ(run("generate " + kModel + " --threads 2 -n 0 --temperature 0.7 --top-p 1 --top-k 5 --repetition-penalty 1.2 --no-repeat-ngram 3 --prompt hi").status, 4);
}

}  // namespace

namespace {

// Was: nlohmann's out_of_range (406) for a number beyond double escaped --jsonl's "not valid
// JSON" (only parse_error was caught): "icae: error: [json.exception.out_of_range.406] …", exit 1.
TEST(CliUsage, TokenizeJsonlNumbersBeyondDoubleAreBadInput) {
  const std::string tokenizer = std::string(ICAE_SHARED_DIR) + "/testdata/tokenizers/gpt2/tokenizer.json";
  const std::string cmd = "printf '\"ok\"\\n1e400\\n' | " + std::string(ICAE_CLI_PATH) + " tokenize --tokenizer " +
                          tokenizer + " --jsonl 2>&1";
  std::string out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  EXPECT_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 3) << out;
  EXPECT_NE(out.find("icae: error: stdin line 2: not valid JSON: [json.exception.out_of_range.406]"), std::string::npos)
      << out;
}

}  // namespace
