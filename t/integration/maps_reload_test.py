"""Lookup tables rebuilt under running daemons (`postern map build`, or a text
table replaced by rename). smtpd is chrooted and cannot open the table again:
it serves the connection in hand with the old table, finishes its sessions
and exits, so the next clients reach a fresh smtpd with the new table. qmgr
restarts the same way for transport_maps (and starts its successor at once).
local, outside the jail, opens a rebuilt alias table again."""
import os
import re
import smtplib
import time

from harness import Instance, free_port, need_root, wait_for
import qmgr_test


def write_table(path, text):
    """Replaces path atomically, as editors and configuration tools do."""
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


def map_build(inst, path, aliases=True):
    r = inst.postern("map", "build", *(["-a"] if aliases else []), path)
    assert r.returncode == 0, f"postern map build {path}: {r.stderr}"


def rcpt(port, address):
    """(code, text) for RCPT TO:<address> in a new SMTP session."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.example")
        s.mail("sender@remote.example")
        code, text = s.rcpt(address)
        return code, text.decode("utf-8", "replace")


def wait_rcpt(port, address, want, timeout=5.0):
    """New sessions until one answers RCPT with `want`. The first session after
    a change may still reach the old smtpd (it serves that one, then exits);
    a later one must reach a fresh smtpd within the timeout."""
    start = time.time()
    seen = []
    while True:
        code, text = rcpt(port, address)
        seen.append(code)
        if code == want:
            return text, len(seen)
        if time.time() - start > timeout:
            raise AssertionError(f"RCPT TO:<{address}>: got {seen} in {time.time() - start:.1f}s, want {want} "
                                 f"within {timeout}s (last reply: {code} {text})")
        time.sleep(0.1)


def smtpd_pids(inst):
    return sorted(p for p in inst.children() if "/smtpd " in open(f"/proc/{p}/cmdline", "rb").read()
                  .replace(b"\0", b" ").decode("utf-8", "replace"))


def smtpd_instance(table_type="hash", aliases_text="oldalias: root\n"):
    port = free_port()
    inst = Instance(main_cf={"mydestination": "localhost", "mynetworks": ""},
                    master_cf=f"{port} inet n - y - - smtpd\n", name="maps")
    inst.port = port
    inst.aliases = os.path.join(inst.etc, "aliases")
    inst.main["alias_maps"] = f"{table_type}:{inst.aliases}"
    inst.write_main_cf()
    write_table(inst.aliases, aliases_text)
    if table_type == "hash":
        map_build(inst, inst.aliases)
    return inst.start()


def test_removed_alias_is_rejected_after_map_build():
    need_root()
    inst = smtpd_instance()
    assert rcpt(inst.port, "oldalias@localhost")[0] == 250
    # A session that is open when the table changes.
    held = smtplib.SMTP("127.0.0.1", inst.port, timeout=10)
    held.ehlo("client.example")
    held.mail("sender@remote.example")
    assert held.rcpt("oldalias@localhost")[0] == 250
    old = smtpd_pids(inst)
    assert len(old) == 1, old

    write_table(inst.aliases, "other: root\n")
    map_build(inst, inst.aliases)
    text, tries = wait_rcpt(inst.port, "oldalias@localhost", 550)
    assert "5.1.1" in text, text
    assert tries <= 2, f"{tries} sessions before the new table was used; want at most 2"
    inst.wait_log(r"postern/smtpd\[%d\]: table hash:%s has changed -- restarting" % (old[0], re.escape(inst.aliases)))
    assert rcpt(inst.port, "other@localhost")[0] == 250

    # The old process finishes the open session with the old table, then exits.
    assert old[0] in smtpd_pids(inst), "the old smtpd must wait for its open session"
    code, _ = held.rcpt("oldalias@localhost")
    assert code == 250, f"the open session got {code}, want 250 (its table is the old one)"
    held.quit()
    wait_for(lambda: old[0] not in smtpd_pids(inst), 5, "the old smtpd to exit after its last session")
    assert not re.search(r"smtpd\[\d+\].*(exit status|killed by signal)", inst.log()), inst.log()


def test_added_alias_is_accepted_after_map_build():
    need_root()
    inst = smtpd_instance()
    assert rcpt(inst.port, "newalias@localhost")[0] == 550
    write_table(inst.aliases, "oldalias: root\nnewalias: root\n")
    map_build(inst, inst.aliases)
    wait_rcpt(inst.port, "newalias@localhost", 250)
    # A second rebuild is noticed by the new process too.
    write_table(inst.aliases, "oldalias: root\n")
    map_build(inst, inst.aliases)
    wait_rcpt(inst.port, "newalias@localhost", 550)
    assert len(re.findall(r"smtpd\[\d+\]: table hash:.* has changed -- restarting", inst.log())) == 2, inst.log()


def test_texthash_alias_table_replaced_by_rename():
    need_root()
    inst = smtpd_instance(table_type="texthash")
    assert rcpt(inst.port, "oldalias@localhost")[0] == 250
    write_table(inst.aliases, "newalias: root\n")
    wait_rcpt(inst.port, "oldalias@localhost", 550)
    assert rcpt(inst.port, "newalias@localhost")[0] == 250


def test_untouched_tables_do_not_restart_smtpd():
    need_root()
    inst = smtpd_instance()
    for _ in range(5):
        assert rcpt(inst.port, "oldalias@localhost")[0] == 250
    # Editing the source without a build changes nothing for hash: tables.
    write_table(inst.aliases, "other: root\n")
    assert rcpt(inst.port, "oldalias@localhost")[0] == 250
    assert len(smtpd_pids(inst)) == 1
    assert "has changed" not in inst.log(), inst.log()


def test_qmgr_restarts_for_a_rebuilt_transport_map():
    need_root()
    inst = qmgr_test.start()
    try:
        transport = os.path.join(inst.etc, "transport")
        inst.main["transport_maps"] = f"hash:{transport}"
        inst.write_main_cf()
        write_table(transport, "elsewhere.example discard:first table\n")
        map_build(inst, transport, aliases=False)
        inst.start()
        # The null sender: nothing bounces back whatever happens.
        qmgr_test.send(inst, "", ["a@elsewhere.example"])
        inst.wait_log(r"to=<a@elsewhere\.example>, relay=none, .*status=sent \(first table\)", timeout=20)
        qmgr = [p for p in inst.children() if "/qmgr " in open(f"/proc/{p}/cmdline", "rb").read()
                .replace(b"\0", b" ").decode("utf-8", "replace")]
        assert len(qmgr) == 1, qmgr

        # Past smtpd's 100 ms trigger rate limit on both sides of the rebuild,
        # so that the old qmgr exits on the trigger that comes with the second
        # message, and nothing but its wake-up can start the successor.
        time.sleep(0.5)
        write_table(transport, "elsewhere.example discard:second table\n")
        map_build(inst, transport, aliases=False)
        time.sleep(0.3)
        qmgr_test.send(inst, "", ["b@elsewhere.example"])
        # Well before qmgr's 300s wake-up: the old qmgr left one for its successor.
        inst.wait_log(r"to=<b@elsewhere\.example>, relay=none, .*status=sent \(second table\)", timeout=10)
        inst.wait_log(r"postern/qmgr\[%d\]: table hash:%s has changed -- restarting" % (qmgr[0], re.escape(transport)))
        assert "cannot leave a wake-up" not in inst.log(), inst.log()
        assert not re.search(r"qmgr.*(exit status|killed by signal|throttling)", inst.log()), inst.log()
    finally:
        qmgr_test.finish(inst)


def test_local_reopens_a_rebuilt_alias_table():
    need_root()
    inst = qmgr_test.start()
    try:
        alice = inst.users.add("alice")
        bob = inst.users.add("bob")
        aliases = os.path.join(inst.etc, "aliases")
        inst.main["alias_maps"] = f"hash:{aliases}"
        inst.write_main_cf()
        write_table(aliases, f"team: {alice}\n")
        map_build(inst, aliases)
        inst.start()
        qmgr_test.send(inst, "sender@example.org", ["team@example.test"], subject="one")
        wait_for(lambda: inst.users.maildir_files(alice), 20, "delivery to alice")

        write_table(aliases, f"team: {bob}\n")
        map_build(inst, aliases)
        qmgr_test.send(inst, "sender@example.org", ["team@example.test"], subject="two")
        wait_for(lambda: inst.users.maildir_files(bob), 20, "delivery to bob through the new table")
        assert len(inst.users.maildir_files(alice)) == 1
        inst.wait_log(r"postern/local\[\d+\]: table hash:%s has changed -- reopening" % re.escape(aliases))
    finally:
        qmgr_test.finish(inst)
