#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <sdlens/io/dtype.hpp>
#include <sdlens/io/gguf_writer.hpp>

using namespace sdlens;

namespace {

std::vector<float> test_values(std::int64_t n, std::uint64_t seed)
{
    // Normal values with a few kinds of awkward block: all zero, all positive, all negative,
    // one outlier, constant.
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(static_cast<std::size_t>(n));
    for (auto& v : x) v = normal(gen);
    for (std::int64_t i = 0; i < 32 && i < n; ++i) x[i] = 0.0f;
    for (std::int64_t i = 32; i < 64 && i < n; ++i) x[i] = std::fabs(x[i]) + 0.5f;
    for (std::int64_t i = 64; i < 96 && i < n; ++i) x[i] = -std::fabs(x[i]) - 0.5f;
    if (n > 100) x[100] = 40.0f;
    for (std::int64_t i = 256; i < 288 && i < n; ++i) x[i] = 0.75f;
    return x;
}

std::vector<float> round_trip(dtype t, const std::vector<float>& x)
{
    const auto bytes = encode_values(t, x.data(), static_cast<std::int64_t>(x.size()));
    REQUIRE(static_cast<std::int64_t>(bytes.size()) == bytes_for(t, static_cast<std::int64_t>(x.size())));
    std::vector<float> y(x.size());
    dequantize(t, bytes.data(), y.data(), static_cast<std::int64_t>(x.size()));
    return y;
}

float max_abs(const float* p, int n)
{
    float m = 0;
    for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(p[i]));
    return m;
}

// f16 scales carry 11 significant bits: a scale rounded up to f16 exceeds the exact one by at
// most a factor 1 + 2^-10.
constexpr float f16_slack = 1.0f + 1.0f / 1024.0f;

}  // namespace

TEST_CASE("Q8_0 round trip stays within half a step of max|x|/127 per block")
{
    const auto x = test_values(1024, 1);
    const auto y = round_trip(dtype::q8_0, x);
    for (int b = 0; b < 1024 / 32; ++b) {
        const float step = max_abs(&x[32 * b], 32) / 127.0f * f16_slack;
        for (int j = 0; j < 32; ++j) CHECK(std::fabs(x[32 * b + j] - y[32 * b + j]) <= 0.5f * step + 1e-7f);
    }
    CHECK(y[0] == 0.0f);  // a zero block decodes to zeros
}

TEST_CASE("Q4_0 round trip: the largest magnitude is exact, others within one step max|x|/8")
{
    const auto x = test_values(1024, 2);
    const auto y = round_trip(dtype::q4_0, x);
    for (int b = 0; b < 1024 / 32; ++b) {
        const float amax = max_abs(&x[32 * b], 32);
        const float step = amax / 8.0f * f16_slack;
        // Levels are d*(q-8), q in [0,15]: the extreme at -8 is hit exactly (up to the f16
        // scale), the other side clips at 7 steps, so a value there may be off by one step.
        for (int j = 0; j < 32; ++j) CHECK(std::fabs(x[32 * b + j] - y[32 * b + j]) <= step + 1e-7f);
    }
    CHECK(std::fabs(y[100] - 40.0f) <= 40.0f / 1024.0f);
}

TEST_CASE("Q4_K round trip stays within half a sub-block step")
{
    const auto x = test_values(1024, 3);
    const auto y = round_trip(dtype::q4_k, x);
    for (int b = 0; b < 1024 / 256; ++b) {
        const float* xb = &x[256 * b];
        // The sub-block range R_j = max(x, 0) - min(x, 0) is spread over 15 levels; the six-bit
        // offset quantization (steps of dmin <= max_j(-min_j)/63) widens the range by at most
        // one dmin, and the six-bit scale (steps of d <= max step / 63) the step by one d.
        float max_low = 0, max_range = 0;
        for (int s = 0; s < 8; ++s) {
            float lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) lo = std::min(lo, xb[32 * s + l]), hi = std::max(hi, xb[32 * s + l]);
            max_low = std::max(max_low, -lo);
            max_range = std::max(max_range, hi - lo);
        }
        const float dmin = max_low / 63.0f * f16_slack;
        const float d = (max_range + dmin) / 15.0f / 63.0f * f16_slack;
        for (int s = 0; s < 8; ++s) {
            float lo = 0, hi = 0;
            for (int l = 0; l < 32; ++l) lo = std::min(lo, xb[32 * s + l]), hi = std::max(hi, xb[32 * s + l]);
            const float step = (hi - lo + dmin) / 15.0f + d;
            for (int l = 0; l < 32; ++l) CHECK(std::fabs(xb[32 * s + l] - y[256 * b + 32 * s + l]) <= 0.5f * step * 1.0001f);
        }
    }
}

TEST_CASE("Q6_K round trip stays within half a sub-block step")
{
    const auto x = test_values(1024, 4);
    const auto y = round_trip(dtype::q6_k, x);
    for (int b = 0; b < 1024 / 256; ++b) {
        const float* xb = &x[256 * b];
        // Each 16 values span levels -31..31 of a step max|x|/31, rounded up to a multiple of
        // d <= (largest step in the block)/127.
        const float d = max_abs(xb, 256) / 31.0f / 127.0f * f16_slack;
        for (int s = 0; s < 16; ++s) {
            const float step = max_abs(xb + 16 * s, 16) / 31.0f + d;
            for (int l = 0; l < 16; ++l) CHECK(std::fabs(xb[16 * s + l] - y[256 * b + 16 * s + l]) <= 0.5f * step * 1.0001f);
        }
    }
}

TEST_CASE("Q4_K decodes ggml's layout: packed six-bit scales and mins, nibbles low then high")
{
    // One hand-built super-block: d = 0.5, dmin = 0.25, sub-block j has scale j+1 and min 2j+1
    // (j >= 4 uses the high bits of bytes 0..7), every byte of qs is 0x3A (low 10, high 3).
    std::vector<std::byte> blk(144);
    const auto d = float_to_f16(0.5f), dmin = float_to_f16(0.25f);
    std::memcpy(blk.data(), &d, 2);
    std::memcpy(blk.data() + 2, &dmin, 2);
    std::uint8_t sc[8], mn[8];
    for (int j = 0; j < 8; ++j) sc[j] = static_cast<std::uint8_t>(j + 1 + (j >= 4 ? 16 : 0)), mn[j] = static_cast<std::uint8_t>(2 * j + 1 + (j >= 4 ? 32 : 0));
    std::uint8_t packed[12] = {};
    for (int j = 0; j < 4; ++j) {
        packed[j] = static_cast<std::uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
        packed[j + 4] = static_cast<std::uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
        packed[j + 8] = static_cast<std::uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
    }
    std::memcpy(blk.data() + 4, packed, 12);
    for (int i = 0; i < 128; ++i) blk[16 + i] = std::byte{0x3A};
    std::vector<float> y(256);
    dequantize(dtype::q4_k, blk.data(), y.data(), 256);
    for (int j = 0; j < 8; ++j) {
        const float q = (j % 2 == 0) ? 10.0f : 3.0f;  // even sub-blocks read low nibbles
        for (int l = 0; l < 32; ++l) CHECK(y[32 * j + l] == 0.5f * sc[j] * q - 0.25f * mn[j]);
    }
}

TEST_CASE("Q6_K decodes ggml's layout: 4 low bits in ql, 2 high bits in qh, int8 scale per 16")
{
    std::vector<std::byte> blk(210);
    // Element e: level 32 + (e % 64) - 32 ... built through the same bit positions ggml uses:
    // within each half h, l in [0,32): e = 128h + l (+32, +64, +96) take ql[l] low, ql[l+32] low,
    // ql[l] high, ql[l+32] high, and qh[l] bits 0-1, 2-3, 4-5, 6-7.
    std::vector<int> level(256);
    for (int e = 0; e < 256; ++e) level[e] = (e * 7) % 64;
    auto* ql = reinterpret_cast<std::uint8_t*>(blk.data());
    auto* qh = ql + 128;
    for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 32; ++l) {
            const int* L = &level[128 * h + l];
            ql[64 * h + l] = static_cast<std::uint8_t>((L[0] & 15) | ((L[64] & 15) << 4));
            ql[64 * h + l + 32] = static_cast<std::uint8_t>((L[32] & 15) | ((L[96] & 15) << 4));
            qh[32 * h + l] = static_cast<std::uint8_t>((L[0] >> 4) | ((L[32] >> 4) << 2) | ((L[64] >> 4) << 4) | ((L[96] >> 4) << 6));
        }
    auto* sc = reinterpret_cast<std::int8_t*>(blk.data() + 192);
    for (int s = 0; s < 16; ++s) sc[s] = static_cast<std::int8_t>(s - 8);
    const auto d = float_to_f16(0.125f);
    std::memcpy(blk.data() + 208, &d, 2);
    std::vector<float> y(256);
    dequantize(dtype::q6_k, blk.data(), y.data(), 256);
    for (int e = 0; e < 256; ++e) CHECK(y[e] == 0.125f * static_cast<float>(e / 16 - 8) * static_cast<float>(level[e] - 32));
}
