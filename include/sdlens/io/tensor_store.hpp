#pragma once
// The tensors of a checkpoint, by name: type, shape and where their bytes are. Bytes live in
// memory-mapped files or, for formats that must be converted on load, in buffers the store owns;
// either way a tensor_info stays valid as long as its store does.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sdlens/core/error.hpp"
#include "sdlens/io/dtype.hpp"

namespace sdlens {

struct tensor_info {
    std::string name;
    dtype type = dtype::f32;
    std::vector<std::int64_t> shape;  // row-major, outermost first (PyTorch order; GGUF ne reversed)
    const std::byte* data = nullptr;
    std::uint64_t nbytes = 0;

    std::int64_t numel() const
    {
        std::int64_t n = 1;
        for (auto s : shape) n *= s;
        return n;
    }
    std::int64_t rows() const { return shape.size() < 2 ? 1 : numel() / shape.back(); }
    std::int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
};

// Checks a shape against a byte count without overflow: every dimension in [0, 2^40], the
// element count fitting the dtype's blocks along the last axis, and the bytes matching exactly.
inline void check_tensor_bytes(const std::string& source, const std::string& name, dtype t,
                               const std::vector<std::int64_t>& shape, std::uint64_t nbytes)
{
    constexpr std::int64_t max_dim = std::int64_t(1) << 40;
    std::int64_t n = 1;
    for (auto s : shape) {
        if (s < 0 || s > max_dim) fail_input(source, "tensor '" + name + "' has an impossible dimension " + std::to_string(s));
        if (s != 0 && n > max_dim / s) fail_input(source, "tensor '" + name + "' has an impossible element count");
        n *= s;
    }
    const std::int64_t inner = shape.empty() ? 1 : shape.back();
    if (inner % layout_of(t).block_elems != 0)
        fail_input(source, "tensor '" + name + "': last dimension " + std::to_string(inner) +
                               " is not a multiple of the " + dtype_name(t) + " block size");
    const std::int64_t want = bytes_for(t, n);
    if (want < 0 || static_cast<std::uint64_t>(want) != nbytes)
        fail_input(source, "tensor '" + name + "': shape and " + dtype_name(t) + " need " + std::to_string(want) +
                               " bytes but " + std::to_string(nbytes) + " are stored");
}

class tensor_store {
public:
    tensor_store() = default;
    explicit tensor_store(std::string source) : source_(std::move(source)) {}

    const std::string& source() const { return source_; }
    // A deque: adding a tensor never moves the ones added before, so views taken early stay valid.
    const std::deque<tensor_info>& tensors() const { return tensors_; }

    const tensor_info* find(std::string_view name) const
    {
        auto it = index_.find(std::string(name));
        return it == index_.end() ? nullptr : &tensors_[it->second];
    }
    const tensor_info& at(std::string_view name) const
    {
        if (const auto* t = find(name)) return *t;
        fail_input(source_, "missing tensor '" + std::string(name) + "'");
    }

    // Adds a tensor whose bytes something in keep_alive() owns (a mapping, a buffer).
    void add(tensor_info t)
    {
        check_tensor_bytes(source_, t.name, t.type, t.shape, t.nbytes);
        if (index_.count(t.name)) fail_input(source_, "tensor '" + t.name + "' appears twice");
        index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }
    // Adds a tensor from bytes the store takes ownership of.
    void add_owned(std::string name, dtype type, std::vector<std::int64_t> shape, std::vector<std::byte> bytes)
    {
        auto buf = std::make_shared<std::vector<std::byte>>(std::move(bytes));
        tensor_info t{std::move(name), type, std::move(shape), buf->data(), buf->size()};
        keep_alive(buf);
        add(std::move(t));
    }
    // Adds an f32 tensor from values (tests, generated models).
    void add_f32(std::string name, std::vector<std::int64_t> shape, const float* values)
    {
        std::int64_t n = 1;
        for (auto s : shape) n *= s;
        std::vector<std::byte> bytes(static_cast<std::size_t>(n) * 4);
        std::memcpy(bytes.data(), values, bytes.size());
        add_owned(std::move(name), dtype::f32, std::move(shape), std::move(bytes));
    }
    void keep_alive(std::shared_ptr<const void> owner) { owners_.push_back(std::move(owner)); }

private:
    std::string source_;
    std::deque<tensor_info> tensors_;
    std::map<std::string, std::size_t> index_;
    std::vector<std::shared_ptr<const void>> owners_;
};

}  // namespace sdlens
