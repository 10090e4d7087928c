// The smallest embedding of sdlens: build a two-tensor store in memory and read a weight view
// in canonical orientation, as an inference engine would hand its own buffers to sdlens.
#include <cstdio>
#include <vector>

#include <sdlens/sdlens.hpp>

int main()
{
    sdlens::tensor_store store("in-memory");
    // A (3 x 2) matrix stored transposed, as GPT-2's Conv1D keeps its weights (in, out).
    const std::vector<float> stored = {1, 2, 3, 4, 5, 6};  // (in=2, out=3)
    store.add_f32("proj.weight", {2, 3}, stored.data());
    const auto w = sdlens::to_dense(sdlens::whole(store.at("proj.weight"), /*transposed=*/true));
    std::printf("canonical (out, in) = (%ld, %ld); row 2 = [%g %g]\n", static_cast<long>(w.rows()),
                static_cast<long>(w.cols()), w(2, 0), w(2, 1));
    return (w.rows() == 3 && w(2, 0) == 3 && w(2, 1) == 6) ? 0 : 1;
}
