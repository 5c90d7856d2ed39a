"""Reading records by position opens only the shards that hold them."""
import pyarrow as pa
import pyarrow.parquet as pq

from records import schema, tables


def shards(tmp_path, n_shards=5, size=10):
    paths = []
    for k in range(n_shards):
        pos = list(range(k * size, (k + 1) * size))
        p = tmp_path / f"part-{k:05d}.parquet"
        pq.write_table(pa.table({schema.POSITION: pos, schema.OUTPUT: [f"row {i}" for i in pos]}), p)
        paths.append(str(p))
    return paths


def test_read_positions_reads_only_the_shards_holding_them(tmp_path, monkeypatch):
    paths = shards(tmp_path)
    opened = []
    real = pq.read_table
    monkeypatch.setattr(tables.pq, "read_table", lambda p, **kw: opened.append(p) or real(p, **kw))
    t = tables.read_positions(paths, [41, 3, 12, 3], [schema.OUTPUT])
    assert t.column(schema.POSITION).to_pylist() == [3, 12, 41]
    assert t.column(schema.OUTPUT).to_pylist() == ["row 3", "row 12", "row 41"]
    assert opened == [paths[0], paths[1], paths[4]]
    assert tables.position_range(paths[2]) == (20, 29)


def test_read_positions_empty_and_unknown(tmp_path):
    paths = shards(tmp_path, 2)
    assert tables.read_positions(paths, [], [schema.OUTPUT]).num_rows == 0
    assert tables.read_positions(paths, [999], [schema.OUTPUT]).num_rows == 0
