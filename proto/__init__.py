"""The .proto files of every API and the code generated from them."""
