#pragma once
// Hugging Face checkpoints: a directory holding config.json beside model.safetensors or beside
// model.safetensors.index.json and its shards, or one .safetensors file (its config.json is looked
// up beside it). A safetensors file is a little-endian u64 header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then the data area;
// offsets count from the start of the data area. Files are mapped, never read into memory.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdlens/core/error.hpp"
#include "sdlens/io/checkpoint.hpp"
#include "sdlens/io/mapped_file.hpp"
#include "sdlens/io/tensor_store.hpp"

namespace sdlens {

// One tensor as its header entry describes it; begin/end are absolute offsets into the file.
struct safetensors_entry {
    std::string name;
    dtype type = dtype::f32;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
};

struct safetensors_header {
    std::vector<safetensors_entry> tensors;  // in data order
    nlohmann::json metadata = nlohmann::json::object();  // "__metadata__", when present
};

namespace detail {

inline dtype safetensors_dtype(const std::string& source, const std::string& tensor, const std::string& name)
{
    if (name == "F32") return dtype::f32;
    if (name == "F16") return dtype::f16;
    if (name == "BF16") return dtype::bf16;
    fail_input(source, "tensor '" + tensor + "' has dtype " + name + ", which sdlens does not read (F32, F16, BF16)");
}

inline const char* safetensors_dtype_name(dtype t)
{
    switch (t) {
    case dtype::f32: return "F32";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    default: return nullptr;
    }
}

// A JSON value read from a file, with parse errors (bad syntax, ill-formed UTF-8) as input errors.
inline nlohmann::json parse_json_text(const char* begin, const char* end, const std::string& source)
{
    try {
        return nlohmann::json::parse(begin, end);
    } catch (const nlohmann::json::exception& e) {
        fail_input(source, std::string("invalid JSON: ") + e.what());
    }
}

inline nlohmann::json read_json_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) fail_input(path, "cannot open");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return parse_json_text(text.data(), text.data() + text.size(), path);
}

inline std::uint64_t offset_value(const nlohmann::json& v, const std::string& source, const std::string& tensor)
{
    if (!v.is_number_unsigned()) fail_input(source, "tensor '" + tensor + "': data_offsets must be non-negative integers");
    return v.get<std::uint64_t>();
}

}  // namespace detail

// Parses and checks the header of safetensors bytes (the whole file): every entry well formed,
// its bytes inside the data area and matching its shape, no two entries overlapping.
inline safetensors_header parse_safetensors(const std::byte* data, std::size_t size, const std::string& source)
{
    byte_reader in(data, size, source);
    const auto header_len = in.read<std::uint64_t>("the header length");
    if (header_len > in.remaining())
        fail_input(source, "header length " + std::to_string(header_len) + " is beyond the end of the file (" +
                               std::to_string(size) + " bytes)");
    const auto* text = reinterpret_cast<const char*>(in.take(static_cast<std::size_t>(header_len), "the header"));
    const std::uint64_t data_start = 8 + header_len;
    const std::uint64_t data_size = size - data_start;

    const nlohmann::json j = detail::parse_json_text(text, text + header_len, source);
    if (!j.is_object()) fail_input(source, "header is not a JSON object");

    safetensors_header h;
    for (const auto& [name, e] : j.items()) {
        if (name == "__metadata__") {
            if (!e.is_object()) fail_input(source, "__metadata__ is not a JSON object");
            h.metadata = e;
            continue;
        }
        if (!e.is_object()) fail_input(source, "tensor '" + name + "': header entry is not a JSON object");
        const auto dt = e.find("dtype");
        const auto shape = e.find("shape");
        const auto offsets = e.find("data_offsets");
        if (dt == e.end() || !dt->is_string()) fail_input(source, "tensor '" + name + "': missing or non-string dtype");
        if (shape == e.end() || !shape->is_array()) fail_input(source, "tensor '" + name + "': missing or non-array shape");
        if (offsets == e.end() || !offsets->is_array() || offsets->size() != 2)
            fail_input(source, "tensor '" + name + "': data_offsets must be [begin, end]");

        safetensors_entry t;
        t.name = name;
        t.type = detail::safetensors_dtype(source, name, dt->get<std::string>());
        for (const auto& s : *shape) {
            if (s.is_number_unsigned() && s.get<std::uint64_t>() > (std::uint64_t(1) << 62))
                fail_input(source, "tensor '" + name + "' has an impossible dimension");
            if (!s.is_number_integer()) fail_input(source, "tensor '" + name + "': shape entries must be integers");
            t.shape.push_back(s.get<std::int64_t>());
        }
        const std::uint64_t b = detail::offset_value((*offsets)[0], source, name);
        const std::uint64_t en = detail::offset_value((*offsets)[1], source, name);
        if (b > en) fail_input(source, "tensor '" + name + "': data_offsets begin " + std::to_string(b) + " > end " + std::to_string(en));
        if (en > data_size)
            fail_input(source, "tensor '" + name + "': data_offsets end " + std::to_string(en) +
                                   " is beyond the data area (" + std::to_string(data_size) + " bytes)");
        check_tensor_bytes(source, name, t.type, t.shape, en - b);
        t.begin = data_start + b;
        t.end = data_start + en;
        h.tensors.push_back(std::move(t));
    }
    std::sort(h.tensors.begin(), h.tensors.end(), [](const auto& a, const auto& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    for (std::size_t i = 1; i < h.tensors.size(); ++i)
        if (h.tensors[i].begin < h.tensors[i - 1].end)
            fail_input(source, "tensors '" + h.tensors[i - 1].name + "' and '" + h.tensors[i].name + "' overlap");
    return h;
}

// Where a Hugging Face checkpoint keeps its config.json: inside the directory, or beside the file.
inline std::string hf_config_path(const std::string& path)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(path, ec)) return (fs::path(path) / "config.json").string();
    return (fs::path(path).parent_path() / "config.json").string();
}

namespace detail {

// Maps one safetensors file and adds its tensors to the store; returns the file's __metadata__.
inline nlohmann::json add_safetensors_file(const std::string& file, tensor_store& store,
                                           std::map<std::string, std::string>& owner_of)
{
    auto mapping = std::make_shared<const mapped_file>(file);
    const auto header = parse_safetensors(mapping->data(), mapping->size(), file);
    store.keep_alive(mapping);
    for (const auto& t : header.tensors) {
        const auto [it, fresh] = owner_of.emplace(t.name, file);
        if (!fresh) fail_input(file, "tensor '" + t.name + "' is also in " + it->second);
        store.add({t.name, t.type, t.shape, mapping->data() + t.begin, t.end - t.begin});
    }
    return header.metadata;
}

}  // namespace detail

inline checkpoint read_safetensors(const std::string& path)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    checkpoint c;
    c.path = path;
    c.format = checkpoint_format::safetensors;
    c.tensors = tensor_store(path);

    std::vector<std::string> files;
    std::string index_file;
    nlohmann::json weight_map;
    if (fs::is_directory(path, ec)) {
        const fs::path dir(path);
        if (fs::exists(dir / "model.safetensors.index.json", ec)) {
            index_file = (dir / "model.safetensors.index.json").string();
            const auto index = detail::read_json_file(index_file);
            if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
                fail_input(index_file, "no \"weight_map\" object");
            weight_map = index["weight_map"];
            for (const auto& [name, shard] : weight_map.items()) {
                if (!shard.is_string()) fail_input(index_file, "weight_map entry '" + name + "' is not a file name");
                const auto shard_name = shard.get<std::string>();
                if (shard_name.empty() || fs::path(shard_name).has_parent_path() || shard_name == "..")
                    fail_input(index_file, "weight_map entry '" + name + "' names '" + shard_name + "', not a file beside the index");
                const auto file = (dir / shard_name).string();
                if (std::find(files.begin(), files.end(), file) == files.end()) files.push_back(file);
            }
            std::sort(files.begin(), files.end());  // shard 1 first: its __metadata__ is the one kept
        } else if (fs::exists(dir / "model.safetensors", ec)) {
            files.push_back((dir / "model.safetensors").string());
        } else {
            fail_input(path, "neither model.safetensors nor model.safetensors.index.json is in this directory");
        }
    } else {
        files.push_back(path);
    }

    std::map<std::string, std::string> owner_of;
    nlohmann::json first_metadata;
    for (const auto& file : files) {
        auto meta = detail::add_safetensors_file(file, c.tensors, owner_of);
        if (first_metadata.is_null()) first_metadata = std::move(meta);
    }
    for (const auto& [name, shard] : weight_map.items()) {
        const auto it = owner_of.find(name);
        const auto want = (fs::path(path) / shard.get<std::string>()).string();
        if (it == owner_of.end()) fail_input(index_file, "tensor '" + name + "' is listed but not in " + want);
        if (it->second != want) fail_input(index_file, "tensor '" + name + "' is listed in " + want + " but found in " + it->second);
    }

    const auto config_file = hf_config_path(path);
    if (!fs::exists(config_file, ec)) fail_input(config_file, "missing (a Hugging Face checkpoint needs its config.json)");
    c.metadata = detail::read_json_file(config_file);
    if (!c.metadata.is_object()) fail_input(config_file, "not a JSON object");
    c.metadata["safetensors_metadata"] = first_metadata.is_null() ? nlohmann::json::object() : first_metadata;
    return c;
}

}  // namespace sdlens
