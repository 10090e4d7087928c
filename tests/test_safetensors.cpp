// The safetensors reader and writer: hand-assembled files decode to the values their bytes spell,
// the writer's files follow the format, shards are gathered through their index, and every kind
// of malformed file is an input_error naming the file.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <sdlens/io/safetensors.hpp>
#include <sdlens/io/safetensors_writer.hpp>
#include <sdlens/model/matrix_view.hpp>

#include "support.hpp"

using namespace sdlens;
using sdlens::test::temp_dir;

namespace {

std::vector<std::uint8_t> read_bytes(const std::filesystem::path& p)
{
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::filesystem::path& p, const std::vector<std::uint8_t>& bytes)
{
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

void write_text(const std::filesystem::path& p, const std::string& text)
{
    write_bytes(p, std::vector<std::uint8_t>(text.begin(), text.end()));
}

// A safetensors file assembled by hand: little-endian u64 header length, header, data.
std::vector<std::uint8_t> assemble(const std::string& header, const std::vector<std::uint8_t>& data, std::uint64_t declared_len)
{
    std::vector<std::uint8_t> b;
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(declared_len >> (8 * i)));
    b.insert(b.end(), header.begin(), header.end());
    b.insert(b.end(), data.begin(), data.end());
    return b;
}
std::vector<std::uint8_t> assemble(const std::string& header, const std::vector<std::uint8_t>& data)
{
    return assemble(header, data, header.size());
}

// Expects read_safetensors(file) to fail with an input_error that names the file and says `what`.
void expect_bad(const std::filesystem::path& file, const std::string& what)
{
    CAPTURE(what);
    bool thrown = false;
    try {
        (void)read_safetensors(file.string());
    } catch (const input_error& e) {
        thrown = true;
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find(file.string()) != std::string::npos);
        CHECK(msg.find(what) != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
    }
    CHECK(thrown);
}

// A valid two-tensor file: "a" F32 [2] = {1, -2}, "b" BF16 [1, 2] = {1, 0.5}.
const std::string good_header =
    R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]}})";
const std::vector<std::uint8_t> good_data = {0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0, 0x80, 0x3F, 0x00, 0x3F};

}  // namespace

TEST_CASE("a hand-assembled safetensors file decodes to the values its bytes spell")
{
    temp_dir dir;
    // IEEE bit patterns: f32 0x3F800000 = 1, 0xC0000000 = -2; f16 0x3C00 = 1, 0xB800 = -0.5;
    // bf16 0x3F80 = 1, 0x3F00 = 0.5.
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"h":{"dtype":"F16","shape":[2],"data_offsets":[12,16]},)"
        R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[1,2],"data_offsets":[8,12]},)"
        R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[16,16]}})";
    std::vector<std::uint8_t> data = good_data;
    for (std::uint8_t v : {0x00, 0x3C, 0x00, 0xB8}) data.push_back(v);
    write_bytes(dir / "m.safetensors", assemble(header, data));
    write_text(dir / "config.json", R"({"model_type": "llama", "hidden_size": 8})");

    const auto c = read_safetensors((dir / "m.safetensors").string());
    CHECK(c.format == checkpoint_format::safetensors);
    CHECK(c.metadata["model_type"] == "llama");
    CHECK(c.metadata["hidden_size"] == 8);
    CHECK(c.metadata["safetensors_metadata"]["format"] == "pt");
    REQUIRE(c.tensors.tensors().size() == 4);
    // Stored in data order, whatever the order of the JSON keys.
    CHECK(c.tensors.tensors()[0].name == "a");
    CHECK(c.tensors.tensors()[2].name == "h");

    const auto a = to_dense(whole_vector(c.tensors.at("a")));
    CHECK(a[0] == 1.0f);
    CHECK(a[1] == -2.0f);
    const auto& b = c.tensors.at("b");
    CHECK(b.type == dtype::bf16);
    CHECK(b.shape == std::vector<std::int64_t>{1, 2});
    const auto bm = to_dense(whole(b));
    CHECK(bm(0, 0) == 1.0f);
    CHECK(bm(0, 1) == 0.5f);
    const auto h = to_dense(whole_vector(c.tensors.at("h")));
    CHECK(h[0] == 1.0f);
    CHECK(h[1] == -0.5f);
    CHECK(c.tensors.at("e").nbytes == 0);
}

TEST_CASE("the writer pads the header to 8 bytes with spaces and its files read back exactly")
{
    temp_dir dir;
    const std::vector<float> v = {0.1f, -3.0f, 65504.0f, 1e-3f, 2.5f, -0.0f};
    std::vector<tensor_bytes> ts = {
        {"x.weight", dtype::f32, {2, 3}, encode_floats(v.data(), 6, dtype::f32)},
        {"y", dtype::f16, {6}, encode_floats(v.data(), 6, dtype::f16)},
        {"z", dtype::bf16, {3, 2}, encode_floats(v.data(), 6, dtype::bf16)},
    };
    write_safetensors((dir / "w.safetensors").string(), ts, {{"format", "pt"}});
    write_text(dir / "config.json", "{}");

    const auto bytes = read_bytes(dir / "w.safetensors");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | bytes[static_cast<std::size_t>(i)];
    CHECK((8 + n) % 8 == 0);
    CHECK(bytes.size() == 8 + n + 24 + 12 + 12);
    CHECK(bytes[8] == '{');
    // The bytes of "x.weight" begin the data area: the first float, 0.1f, verbatim.
    std::uint32_t first;
    std::memcpy(&first, bytes.data() + 8 + n, 4);
    std::uint32_t expect;
    std::memcpy(&expect, &v[0], 4);
    CHECK(first == expect);

    const auto c = read_safetensors((dir / "w.safetensors").string());
    CHECK(c.metadata["safetensors_metadata"]["format"] == "pt");
    const auto x = to_dense(whole(c.tensors.at("x.weight")));
    const auto y = to_dense(whole_vector(c.tensors.at("y")));
    const auto z = to_dense(whole(c.tensors.at("z")));
    for (int i = 0; i < 6; ++i) {
        CHECK(x(i / 3, i % 3) == v[i]);
        CHECK(y[i] == f16_to_float(float_to_f16(v[i])));
        CHECK(z(i / 2, i % 2) == bf16_to_float(float_to_bf16(v[i])));
    }
    // 65504 is the largest f16; 0.1 is not a bf16, so rounding happened.
    CHECK(y[2] == 65504.0f);
    CHECK(z(0, 0) != 0.1f);
}

TEST_CASE("a sharded checkpoint is gathered through its index")
{
    temp_dir dir;
    const std::vector<float> v = {1, 2, 3, 4};
    write_safetensors((dir / "model-00001-of-00002.safetensors").string(),
                      {{"p", dtype::f32, {2}, encode_floats(v.data(), 2, dtype::f32)}});
    write_safetensors((dir / "model-00002-of-00002.safetensors").string(),
                      {{"q", dtype::f32, {2}, encode_floats(v.data() + 2, 2, dtype::f32)}});
    write_text(dir / "config.json", R"({"model_type": "llama"})");
    const auto index = R"({"metadata": {"total_size": 16}, "weight_map": {"p": "model-00001-of-00002.safetensors", "q": "model-00002-of-00002.safetensors"}})";
    write_text(dir / "model.safetensors.index.json", index);

    const auto c = read_safetensors(dir.path().string());
    CHECK(c.path == dir.path().string());
    CHECK(c.tensors.tensors().size() == 2);
    CHECK(to_dense(whole_vector(c.tensors.at("p")))[1] == 2.0f);
    CHECK(to_dense(whole_vector(c.tensors.at("q")))[0] == 3.0f);

    SUBCASE("a tensor the index lists but no shard holds")
    {
        write_text(dir / "model.safetensors.index.json",
                   R"({"weight_map": {"p": "model-00001-of-00002.safetensors", "q": "model-00002-of-00002.safetensors", "r": "model-00002-of-00002.safetensors"}})");
        expect_bad(dir.path(), "'r' is listed");
    }
    SUBCASE("a tensor in the wrong shard")
    {
        write_text(dir / "model.safetensors.index.json",
                   R"({"weight_map": {"p": "model-00002-of-00002.safetensors", "q": "model-00002-of-00002.safetensors"}})");
        expect_bad(dir.path(), "'p' is listed");
    }
    SUBCASE("one name in two shards")
    {
        write_safetensors((dir / "model-00002-of-00002.safetensors").string(),
                          {{"p", dtype::f32, {2}, encode_floats(v.data(), 2, dtype::f32)}});
        expect_bad(dir.path(), "'p' is also in");
    }
    SUBCASE("a shard that does not exist")
    {
        write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"p": "nowhere.safetensors"}})");
        expect_bad(dir.path(), "nowhere.safetensors");
    }
    SUBCASE("a shard name that leaves the directory")
    {
        write_text(dir / "model.safetensors.index.json", R"({"weight_map": {"p": "../model-00001-of-00002.safetensors"}})");
        expect_bad(dir.path(), "not a file beside the index");
    }
    SUBCASE("an index that is not JSON")
    {
        write_text(dir / "model.safetensors.index.json", "{\"weight_map\": ");
        expect_bad(dir.path(), "invalid JSON");
    }
}

TEST_CASE("malformed safetensors files are input errors naming the file")
{
    temp_dir dir;
    write_text(dir / "config.json", R"({"model_type": "llama"})");
    const auto file = dir / "model.safetensors";
    const auto bad = [&](const std::vector<std::uint8_t>& bytes, const std::string& what) {
        write_bytes(file, bytes);
        expect_bad(file, what);
        expect_bad(dir.path(), what);  // the same file found through its directory
    };
    const auto with_tensor = [](const std::string& entry) { return "{\"t\":" + entry + "}"; };

    // The valid file these are variations of.
    write_bytes(file, assemble(good_header, good_data));
    CHECK_NOTHROW((void)read_safetensors(file.string()));

    SUBCASE("empty file") { bad({}, "truncated"); }
    SUBCASE("shorter than its header length field") { bad({1, 0, 0}, "truncated"); }
    SUBCASE("header length beyond the file") { bad(assemble(good_header, good_data, 1000), "beyond the end of the file"); }
    SUBCASE("header length near 2^64") { bad(assemble(good_header, good_data, ~std::uint64_t(0) - 3), "beyond the end of the file"); }
    SUBCASE("truncated data")
    {
        auto b = assemble(good_header, good_data);
        b.resize(b.size() - 3);
        bad(b, "beyond the data area");
    }
    SUBCASE("truncated header") { bad(assemble(good_header.substr(0, 40), {}), "invalid JSON"); }
    SUBCASE("offsets outside the data area")
    {
        bad(assemble(with_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[8,16]})"), good_data), "beyond the data area");
    }
    SUBCASE("offsets begin after end") { bad(assemble(with_tensor(R"({"dtype":"F32","shape":[0],"data_offsets":[8,4]})"), good_data), "> end"); }
    SUBCASE("negative offsets") { bad(assemble(with_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), good_data), "non-negative"); }
    SUBCASE("overlapping tensors")
    {
        bad(assemble(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", good_data),
            "overlap");
    }
    SUBCASE("negative dimension") { bad(assemble(with_tensor(R"({"dtype":"F32","shape":[-2, -1],"data_offsets":[0,8]})"), good_data), "impossible dimension"); }
    SUBCASE("absurd dimensions whose product overflows")
    {
        bad(assemble(with_tensor(R"({"dtype":"F32","shape":[1099511627776, 1099511627776],"data_offsets":[0,8]})"), good_data), "impossible");
    }
    SUBCASE("dimension beyond int64") { bad(assemble(with_tensor(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})"), good_data), "impossible"); }
    SUBCASE("fractional dimension") { bad(assemble(with_tensor(R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,8]})"), good_data), "integers"); }
    SUBCASE("shape and byte count disagree") { bad(assemble(with_tensor(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), good_data), "need 12 bytes but 8"); }
    SUBCASE("a dtype sdlens does not read") { bad(assemble(with_tensor(R"({"dtype":"I64","shape":[1],"data_offsets":[0,8]})"), good_data), "'t' has dtype I64"); }
    SUBCASE("missing dtype") { bad(assemble(with_tensor(R"({"shape":[2],"data_offsets":[0,8]})"), good_data), "dtype"); }
    SUBCASE("data_offsets of the wrong arity") { bad(assemble(with_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0]})"), good_data), "data_offsets"); }
    SUBCASE("entry that is not an object") { bad(assemble(with_tensor("[1,2]"), good_data), "not a JSON object"); }
    SUBCASE("header that is not an object") { bad(assemble("[]", good_data), "not a JSON object"); }
    SUBCASE("invalid JSON") { bad(assemble(R"({"t":{"dtype":"F32",)", good_data), "invalid JSON"); }
    SUBCASE("invalid UTF-8 in a name")
    {
        std::string h = good_header;
        h[2] = static_cast<char>(0xFF);  // the tensor name "a" becomes a byte no UTF-8 text contains
        bad(assemble(h, good_data), "UTF-8");
    }
    // The file at fault is config.json: the message names it.
    const auto expect_bad_config = [&](const std::string& what) {
        bool thrown = false;
        try {
            (void)read_safetensors(file.string());
        } catch (const input_error& e) {
            thrown = true;
            CHECK(std::string(e.what()).find((dir / "config.json").string() + ": " + what) != std::string::npos);
        }
        CHECK(thrown);
    };
    SUBCASE("config.json missing")
    {
        std::filesystem::remove(dir / "config.json");
        expect_bad_config("missing");
    }
    SUBCASE("config.json not JSON")
    {
        write_text(dir / "config.json", "{\"model_type\": \"llama\"");
        expect_bad_config("invalid JSON");
    }
    SUBCASE("config.json not an object")
    {
        write_text(dir / "config.json", "[]");
        expect_bad_config("not a JSON object");
    }
    SUBCASE("a directory without weights")
    {
        std::filesystem::remove(file);
        expect_bad(dir.path(), "neither model.safetensors");
    }
}

TEST_CASE("the writer refuses what the format cannot hold")
{
    temp_dir dir;
    const std::vector<float> v = {1, 2};
    CHECK_THROWS_AS(write_safetensors((dir / "a.safetensors").string(), {{"t", dtype::q8_0, {32}, std::vector<std::byte>(34)}}), input_error);
    CHECK_THROWS_AS(write_safetensors((dir / "b.safetensors").string(), {{"t", dtype::f32, {3}, encode_floats(v.data(), 2, dtype::f32)}}),
                    input_error);
    CHECK_THROWS_AS(write_safetensors((dir / "c.safetensors").string(),
                                      {{"t", dtype::f32, {2}, encode_floats(v.data(), 2, dtype::f32)},
                                       {"t", dtype::f32, {2}, encode_floats(v.data(), 2, dtype::f32)}}),
                    input_error);
}

namespace {
// Resident pages of this process (Linux /proc/self/statm), or -1 where there is no /proc.
long resident_pages()
{
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = -1;
    if (!(statm >> size >> resident)) return -1;
    return resident;
}
}  // namespace

TEST_CASE("released pages of a mapped file leave the resident set and read back unchanged")
{
    temp_dir dir;
    const auto path = dir / "weights.bin";
    constexpr std::size_t n = std::size_t(16) << 20;  // 4096 pages: far above the noise of other allocations
    std::vector<std::uint8_t> bytes(n);
    for (std::size_t i = 0; i < n; ++i) bytes[i] = static_cast<std::uint8_t>(i * 2654435761u >> 24);
    write_bytes(path, bytes);

    const sdlens::mapped_file file(path.string());
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < n; i += 4096) sum += static_cast<std::uint8_t>(file.data()[i]);  // touch every page
    const long touched = resident_pages();
    if (touched < 0) {
        MESSAGE("no /proc/self/statm: resident set not checked");
        return;
    }
    if (!sdlens::release_pages(file.data(), file.size())) {
        MESSAGE("the kernel declined MADV_PAGEOUT: resident set not checked");
        return;
    }
    const long released = resident_pages();
    // 16 MiB = 4096 pages left; allow 10% for whatever else the process touched meanwhile.
    CHECK(touched - released >= 4096 * 9 / 10);
    std::uint64_t again = 0;
    for (std::size_t i = 0; i < n; i += 4096) again += static_cast<std::uint8_t>(file.data()[i]);
    CHECK(again == sum);
    CHECK(std::memcmp(file.data(), bytes.data(), n) == 0);
}
