#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include <sdlens/io/dtype.hpp>

using namespace sdlens;

TEST_CASE("f16 and bf16 conversions are exact on representable values and round to nearest even")
{
    // Closed forms: 1.5 and -2^-14 are exact in both; 1 + 2^-8 lies halfway between two bf16
    // values (1 and 1 + 2^-7) and ties to the even one, 1.
    CHECK(f16_to_float(float_to_f16(1.5f)) == 1.5f);
    CHECK(f16_to_float(float_to_f16(-std::ldexp(1.0f, -14))) == -std::ldexp(1.0f, -14));
    CHECK(bf16_to_float(float_to_bf16(1.5f)) == 1.5f);
    CHECK(bf16_to_float(float_to_bf16(1.0f + std::ldexp(1.0f, -8))) == 1.0f);
    CHECK(bf16_to_float(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))) == 1.0f + std::ldexp(1.0f, -6));
    CHECK(f16_to_float(0x3C00) == 1.0f);  // IEEE half bit patterns
    CHECK(f16_to_float(0xC000) == -2.0f);
    CHECK(bf16_to_float(0x3F80) == 1.0f);
}

TEST_CASE("byte counts of block types")
{
    CHECK(bytes_for(dtype::q8_0, 64) == 68);
    CHECK(bytes_for(dtype::q8_0, 33) == -1);
    CHECK(bytes_for(dtype::q4_k, 512) == 288);
    CHECK(bytes_for(dtype::q6_k, 256) == 210);
    CHECK(bytes_for(dtype::bf16, 3) == 6);
}

TEST_CASE("Q8_0 and Q4_0 blocks decode to scale times integer")
{
    std::vector<std::byte> q8(34);
    const std::uint16_t half = float_to_f16(0.5f);
    std::memcpy(q8.data(), &half, 2);
    for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<std::byte>(static_cast<std::int8_t>(j - 16));
    std::vector<float> out(32);
    dequantize(dtype::q8_0, q8.data(), out.data(), 32);
    for (int j = 0; j < 32; ++j) CHECK(out[j] == 0.5f * (j - 16));

    std::vector<std::byte> q4(18);
    std::memcpy(q4.data(), &half, 2);
    for (int j = 0; j < 16; ++j) q4[2 + j] = static_cast<std::byte>((15 - j) << 4 | j);
    dequantize(dtype::q4_0, q4.data(), out.data(), 32);
    for (int j = 0; j < 16; ++j) {
        CHECK(out[j] == 0.5f * (j - 8));
        CHECK(out[j + 16] == 0.5f * (15 - j - 8));
    }
}
