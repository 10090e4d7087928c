// A consumer of the installed package: includes the umbrella header and runs one computation.
#include <cstdio>

#include <sdlens/sdlens.hpp>

int main()
{
    // bf16 rounding of 1 + 2^-8 is 1 (ties to even), a fact the library's conversions must keep.
    const float back = sdlens::bf16_to_float(sdlens::float_to_bf16(1.0f + 1.0f / 256));
    std::printf("sdlens %s: bf16(1 + 2^-8) = %g\n", SDLENS_VERSION_STRING, back);
    return back == 1.0f ? 0 : 1;
}
