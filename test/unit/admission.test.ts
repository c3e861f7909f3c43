import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { admit } from "../../src/routing/admission.js";

describe("admission", () => {
  const open = { allow: null, deny: [], maxIdLength: 8 };
  const request = (requester: string, id = "1") => ({ requester, id });

  it("refuses ids longer than the limit, in octets", () => {
    assert.equal(admit(request("u@example.org/r", "12345678"), open), null);
    assert.equal(admit(request("u@example.org/r", "123456789"), open), "idTooLong");
    assert.equal(admit(request("u@example.org/r", "ééééé"), open), "idTooLong", "10 octets in UTF-8");
  });

  it("refuses denied bare JIDs and domains, whatever the resource or case", () => {
    const policy = { ...open, deny: ["spam.example", "bad@example.org"] };
    assert.equal(admit(request("x@spam.example/1"), policy), "forbidden");
    assert.equal(admit(request("spam.example"), policy), "forbidden", "the domain itself");
    assert.equal(admit(request("Bad@Example.org/home"), policy), "forbidden");
    assert.equal(admit(request("good@example.org/home"), policy), null);
    assert.equal(admit(request("x@sub.spam.example/1"), policy), null, "only the domain listed");
  });

  it("admits only the allowed, and the deny list wins", () => {
    const policy = { ...open, allow: ["example.org", "partner@other.example"], deny: ["bad@example.org"] };
    assert.equal(admit(request("anyone@example.org/r"), policy), null);
    assert.equal(admit(request("partner@other.example/r"), policy), null);
    assert.equal(admit(request("stranger@other.example/r"), policy), "forbidden");
    assert.equal(admit(request("bad@example.org/r"), policy), "forbidden");
  });
});
