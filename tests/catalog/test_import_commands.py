"""import_catalog / encode_status: bad lines named by line number; nothing half-imported on stop."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.catalog.selectors import catalog_status, item_get

CSV_OK = (
    "id,title,description,categories,available,attributes,brand\n"
    '1,Red shoe,"A shoe, red",shoes|red,true,"{""size"": 42}",Acme\n'
    "2,Blue shoe,,shoes,no,,\n"
)


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_csv_imports_with_categories_attributes_and_extra_columns(tenant_a, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(CSV_OK)
    out, _ = _run("import_catalog", str(path), "--tenant", tenant_a.slug)
    assert "2 items from 2 lines: 2 created" in out
    red = item_get(tenant_id=tenant_a.tenant.id, external_id="1")
    assert red.categories == ["shoes", "red"]
    assert red.attributes == {"size": 42, "brand": "Acme"}
    assert red.description == "A shoe, red"
    assert item_get(tenant_id=tenant_a.tenant.id, external_id="2").available is False


def test_a_bad_csv_row_stops_the_import_naming_its_line_and_writes_nothing(tenant_a, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(CSV_OK + "3,,,,,,\n" + "4,Too,many,fields,true,{},x,y\n")
    with pytest.raises(CommandError, match=r"line 4: .*title"):
        _run("import_catalog", str(path), "--tenant", tenant_a.slug)
    assert catalog_status(tenant_id=tenant_a.tenant.id)["items"] == 0


def test_on_error_continue_skips_bad_lines_and_reports_each(tenant_a, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(CSV_OK + "3,,,,,,\n" + "4,Too,many,fields,true,{},x,y\n" + "5,Fine again,,,,,\n")
    out, err = _run("import_catalog", str(path), "--tenant", tenant_a.slug, "--on-error", "continue")
    assert "line 4:" in err and "title" in err
    assert "line 5: expected 7 fields, got 8" in err
    assert "2 bad lines skipped" in out
    assert catalog_status(tenant_id=tenant_a.tenant.id)["items"] == 3


def test_multiline_csv_fields_keep_later_line_numbers_right(tenant_a, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text('id,title,description\n1,A,"two\nlines"\n2,,x\n')
    with pytest.raises(CommandError, match="line 4: "):
        _run("import_catalog", str(path), "--tenant", tenant_a.slug)


def test_json_lines_import_and_bad_json_is_reported_by_line(tenant_a, tmp_path):
    path = tmp_path / "items.jsonl"
    lines = [
        json.dumps({"id": "j1", "title": "One", "categories": ["x"]}),
        "",
        "{broken",
        json.dumps({"id": "j2", "title": "Two", "categories": [1]}),
        json.dumps({"id": "j3", "title": "Three"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    _out, err = _run("import_catalog", str(path), "--tenant", tenant_a.slug, "--on-error", "continue")
    assert "line 3: not valid JSON" in err
    assert "line 4: categories" in err
    assert catalog_status(tenant_id=tenant_a.tenant.id)["items"] == 2


def test_an_unknown_tenant_or_format_is_a_clear_command_error(tenant_a, tmp_path):
    path = tmp_path / "items.txt"
    path.write_text("x")
    with pytest.raises(CommandError, match="no tenant 'nobody-here'"):
        _run("import_catalog", str(path), "--tenant", "nobody-here")
    with pytest.raises(CommandError, match=r"\.csv or \.jsonl"):
        _run("import_catalog", str(path), "--tenant", tenant_a.slug)


def test_encode_status_prints_the_counts(tenant_a, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(CSV_OK)
    _run("import_catalog", str(path), "--tenant", tenant_a.slug)
    out, _ = _run("encode_status", "--tenant", tenant_a.slug, "--json")
    counts = json.loads(out)
    assert counts["tenant"] == tenant_a.slug and counts["items"] == 2
    assert counts["pending"] + counts["ready"] + counts["failed"] == 2
