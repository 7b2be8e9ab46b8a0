"""The .proto files of every API and the code generated from them.

    proto/hyperwall/<api>/<version>/<api>.proto   the source, e.g. control/v1/control.proto
    proto/gen/hyperwall/<api>/<version>/           generated, imported as
                                                   proto.gen.hyperwall.<api>.<version>
    proto/generate.py                              regenerates proto/gen/ from every .proto

A new API is a new .proto file under proto/hyperwall/ and a run of generate.py; commit both.
tests/unit/test_proto_fresh.py fails when the generated code is stale.
"""
