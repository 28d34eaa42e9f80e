//! /proc parsing: pure parsers over bytes, plus a pid-directory reader.
#![forbid(unsafe_code)]
