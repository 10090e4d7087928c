#pragma once
// A text corpus as the paper's authors sample it: one sample per line, only lines whose length
// is strictly between 10 and 1000 characters (Unicode code points, as Python's len counts them,
// without the line break), the first N such lines. Read one line at a time: memory does not grow
// with the file.
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>

#include "sdlens/core/error.hpp"

namespace sdlens {

struct corpus_options {
    std::int64_t max_lines = 1000;  // qualifying lines to take; 0 = all
    std::int64_t min_exclusive = 10, max_exclusive = 1000;
};

class corpus_reader {
public:
    explicit corpus_reader(const std::string& path, corpus_options o = {}) : path_(path), opt_(o), in_(path, std::ios::binary)
    {
        if (!in_) fail_input(path, "cannot open the corpus");
    }

    // The next qualifying line, or nullopt at the end of the file or after max_lines.
    std::optional<std::string> next()
    {
        std::string line;
        while ((opt_.max_lines == 0 || taken_ < opt_.max_lines) && std::getline(in_, line)) {
            ++read_;
            if (!line.empty() && line.back() == '\r') line.pop_back();
            const std::int64_t n = code_points(line);
            if (n > opt_.min_exclusive && n < opt_.max_exclusive) {
                ++taken_;
                return line;
            }
        }
        return std::nullopt;
    }

    std::int64_t lines_read() const { return read_; }
    std::int64_t lines_taken() const { return taken_; }
    const std::string& path() const { return path_; }

    static std::int64_t code_points(const std::string& s)
    {
        std::int64_t n = 0;
        for (unsigned char c : s) n += (c & 0xC0) != 0x80;  // every byte but UTF-8 continuations
        return n;
    }

private:
    std::string path_;
    corpus_options opt_;
    std::ifstream in_;
    std::int64_t read_ = 0, taken_ = 0;
};

// The whole file as one string, for protocols that tokenize a corpus once (perplexity). Files
// beyond max_bytes are refused before anything is allocated.
inline std::string read_text_file(const std::string& path, std::int64_t max_bytes = std::int64_t(1) << 31)
{
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail_input(path, "cannot open the corpus");
    const std::streamoff size = in.tellg();
    if (size < 0) fail_input(path, "cannot read the corpus");
    if (size > max_bytes)
        fail_input(path, "the corpus is " + std::to_string(size) + " bytes, more than the " + std::to_string(max_bytes) + " read at once");
    std::string text(static_cast<std::size_t>(size), '\0');
    in.seekg(0);
    if (!in.read(text.data(), size)) fail_input(path, "cannot read the corpus");
    return text;
}

}  // namespace sdlens
