#pragma once
// Bit-exact conversions between float and the two 16-bit float formats weights are stored in.
#include <cstdint>
#include <cstring>

#include <Eigen/Core>

namespace sdlens {

inline float f16_to_float(std::uint16_t bits)
{
    return static_cast<float>(Eigen::numext::bit_cast<Eigen::half>(bits));
}
inline float bf16_to_float(std::uint16_t bits)
{
    std::uint32_t w = static_cast<std::uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &w, 4);
    return f;
}
inline std::uint16_t float_to_f16(float f)
{
    return Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(f));
}
inline std::uint16_t float_to_bf16(float f)
{
    return Eigen::numext::bit_cast<std::uint16_t>(Eigen::bfloat16(f));  // round to nearest even
}

}  // namespace sdlens
