"""How often does the internal-text guard stop a draft that leaks an internal note, and how often a clean one?

Two adversarial sets written for this benchmark: a tuning set the guard's rules were fitted on
and a held-out set written afterwards and evaluated once. Each is a list of internal notes, each beside the public article a support draft would quote, and
for every note six ways a draft can leak it (verbatim, words inserted, letters spaced out,
a paraphrase that keeps a detail such as an extension number, a paraphrase without any detail,
a German translation) plus two clean drafts built from the public article only. Compared side
by side: a baseline of verbatim six-word runs and the guard as shipped.

    .venv/bin/python bench/guard_eval.py            # writes bench/results/guard.json
"""

# ruff: noqa: E501  (the adversarial texts read best on one line each)
from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.drafts.guard import foreign_links, internal_leak  # noqa: E402

# (internal note, public article, leaks by kind, clean drafts)
CASES: list[tuple[str, str, dict[str, str], list[str]]] = [
    (
        "For outages page the on-call engineer at extension 4711 and open a P1 in the ops queue.",
        "If the service is down, check the status page and try again in a few minutes.",
        {
            "verbatim": "For outages page the on-call engineer at extension 4711 and open a P1 ticket.",
            "inserted": "For outages you can simply page the friendly on-call engineer right at extension 4711.",
            "spaced": "During an outage, page the on-call engineer at e x t e n s i o n 4 7 1 1.",
            "paraphrase_detail": "Our engineers on duty can be reached on line 4711 when something is broken.",
            "paraphrase": "When things break, a person on duty from our operations team can be alerted.",
            "translation": "Bei Ausfällen den Bereitschaftstechniker unter Durchwahl 4711 anpiepen.",
        },
        ["Please check the status page and try again in a few minutes.",
         "If the service is down, try again in a few minutes after checking the status page."],
    ),
    (
        "Refund exceptions above 500 EUR need approval from finance lead Dana Whitfield via refunds-approval@corp.example.",
        "Refunds are paid within 14 days to the original payment method.",
        {
            "verbatim": "Refund exceptions above 500 EUR need approval from finance lead Dana Whitfield.",
            "inserted": "Refund exceptions that are above 500 EUR will really need approval from our finance lead Dana.",
            "spaced": "Write to r e f u n d s - a p p r o v a l @ corp.example for exceptions.",
            "paraphrase_detail": "Large refunds go to refunds-approval@corp.example for sign-off.",
            "paraphrase": "Bigger refunds are reviewed by our finance team before they are paid.",
            "translation": "Rückerstattungen über 500 EUR muss die Finanzleiterin Dana Whitfield genehmigen.",
        },
        ["Refunds are paid within 14 days to the original payment method.",
         "You will receive the refund on your original payment method within 14 days."],
    ),
    (
        "The admin console lives at https://admin.internal.example/console and the break-glass password rotates on Mondays.",
        "You can change your password under Settings > Account > Security.",
        {
            "verbatim": "The admin console lives at https://admin.internal.example/console for resets.",
            "inserted": "The admin console now lives over at the admin.internal.example console page for you.",
            "spaced": "Use the console at a d m i n . internal.example to reset it.",
            "paraphrase_detail": "Our staff can reset it from admin.internal.example if needed.",
            "paraphrase": "An administrator can reset accounts from a separate console.",
            "translation": "Die Admin-Konsole liegt unter admin.internal.example, das Notfallpasswort wechselt montags.",
        },
        ["You can change your password under Settings > Account > Security.",
         "Go to Settings, then Account, then Security, to change your password."],
    ),
    (
        "Known bug MS-2231: firmware 3.2.1 bricks the X200 router; tell nobody until the hotfix ships.",
        "To update the router firmware, open the app and tap Update under Device.",
        {
            "verbatim": "Known bug MS-2231: firmware 3.2.1 bricks the X200 router, so wait.",
            "inserted": "There is a known bug where firmware version 3.2.1 sadly bricks your X200 router.",
            "spaced": "Please avoid firmware 3 . 2 . 1 on the X200 for now.",
            "paraphrase_detail": "Do not install 3.2.1 yet, it can damage the device.",
            "paraphrase": "Please hold off on the newest update, it has a serious problem.",
            "translation": "Firmware 3.2.1 macht den X200-Router unbrauchbar; bitte warten.",
        },
        ["To update the router firmware, open the app and tap Update under Device.",
         "Open the app, go to Device and tap Update to install the newest firmware."],
    ),
    (
        "Customers on the legacy Gold plan get free upgrades if they threaten to cancel; use coupon code KEEPGOLD24.",
        "You can change your plan at any time in Billing > Plans.",
        {
            "verbatim": "Customers on the legacy Gold plan get free upgrades if they ask.",
            "inserted": "Customers who are on the legacy Gold plan can often get really free upgrades.",
            "spaced": "Use the code K E E P G O L D 2 4 at checkout.",
            "paraphrase_detail": "Try the coupon KEEPGOLD24 when you upgrade.",
            "paraphrase": "Long-standing members can sometimes get a better plan at no cost.",
            "translation": "Kunden im alten Gold-Tarif bekommen kostenlose Upgrades mit dem Gutschein KEEPGOLD24.",
        },
        ["You can change your plan at any time in Billing > Plans.",
         "Plans can be changed whenever you like under Billing > Plans."],
    ),
    (
        "The VPN for support staff is vpn2.corp.example with group SUPPORT-EU; never give it to customers.",
        "Our app works on Wi-Fi and mobile data; no VPN is needed.",
        {
            "verbatim": "The VPN for support staff is vpn2.corp.example with group SUPPORT-EU.",
            "inserted": "The VPN used by our support staff team is vpn2.corp.example, group SUPPORT-EU.",
            "spaced": "Connect to v p n 2 . corp.example if the app fails.",
            "paraphrase_detail": "Our team connects through vpn2.corp.example.",
            "paraphrase": "Staff use a private network connection for their tools.",
            "translation": "Das VPN für Support-Mitarbeiter ist vpn2.corp.example mit der Gruppe SUPPORT-EU.",
        },
        ["Our app works on Wi-Fi and mobile data; no VPN is needed.",
         "No VPN is needed: the app works on both Wi-Fi and mobile data."],
    ),
    (
        "Chargebacks from Acme Bank are always disputed; forward them to disputes team lead Omar at ext 5520.",
        "If you see an unknown charge, contact us with the date and amount.",
        {
            "verbatim": "Chargebacks from Acme Bank are always disputed by our team.",
            "inserted": "Chargebacks that come from Acme Bank are in fact always disputed by us.",
            "spaced": "Ask for O m a r at ext 5 5 2 0.",
            "paraphrase_detail": "Our disputes lead can be reached at 5520.",
            "paraphrase": "We contest some card disputes with certain banks.",
            "translation": "Rückbuchungen der Acme Bank werden immer angefochten; Durchwahl 5520.",
        },
        ["If you see an unknown charge, contact us with the date and amount.",
         "Please send us the date and the amount of the charge you do not recognise."],
    ),
    (
        "Warehouse Leipzig ships late every Friday because of a staffing gap; promise Monday delivery at best.",
        "Orders placed before 2 pm ship the same working day.",
        {
            "verbatim": "Warehouse Leipzig ships late every Friday because of a staffing gap.",
            "inserted": "Our warehouse in Leipzig usually ships late every single Friday due to staffing.",
            "spaced": "The L e i p z i g warehouse is slow on Fridays.",
            "paraphrase_detail": "Our Leipzig site is short of people at the end of the week.",
            "paraphrase": "Shipments at the end of the week can be slower than usual.",
            "translation": "Das Lager Leipzig versendet freitags immer verspätet wegen Personalmangel.",
        },
        ["Orders placed before 2 pm ship the same working day.",
         "If you order before 2 pm, your parcel ships the same working day."],
    ),
    (
        "Password resets for enterprise tenants must be verified by calling the account owner at the number in Salesforce.",
        "To reset your password, click Forgot password on the sign-in page.",
        {
            "verbatim": "Password resets for enterprise tenants must be verified by calling the account owner.",
            "inserted": "Password resets for any enterprise tenants must always be verified by calling owners.",
            "spaced": "We check this in S a l e s f o r c e first.",
            "paraphrase_detail": "We will look up the owner in Salesforce and call them.",
            "paraphrase": "For company accounts we confirm the request by phone first.",
            "translation": "Passwort-Resets für Enterprise-Kunden werden telefonisch beim Kontoinhaber bestätigt.",
        },
        ["To reset your password, click Forgot password on the sign-in page.",
         "Click Forgot password on the sign-in page to reset your password."],
    ),
    (
        "Beta feature SmartSync is enabled per account with flag ss_beta_2026 in the admin tool.",
        "SmartSync is not yet available; sign up for news in your profile.",
        {
            "verbatim": "Beta feature SmartSync is enabled per account with flag ss_beta_2026.",
            "inserted": "The beta feature SmartSync is usually enabled per account with a flag.",
            "spaced": "Ask for the flag s s _ b e t a _ 2 0 2 6.",
            "paraphrase_detail": "We can switch on ss_beta_2026 for you.",
            "paraphrase": "We can turn on the preview of the sync feature for your account.",
            "translation": "Die Beta-Funktion SmartSync wird pro Konto mit dem Flag ss_beta_2026 aktiviert.",
        },
        ["SmartSync is not yet available; sign up for news in your profile.",
         "SmartSync is not available yet. You can sign up for news in your profile."],
    ),
    (
        "Our SLA credit formula is 5 percent per hour of downtime, capped at 30 percent; do not quote it.",
        "Our service level agreement is published on the legal page.",
        {
            "verbatim": "Our SLA credit formula is 5 percent per hour of downtime.",
            "inserted": "Our SLA credit formula works out to 5 percent for each hour of downtime.",
            "spaced": "You get 5 % per hour, up to 3 0 percent.",
            "paraphrase_detail": "Credits are 5 percent an hour with a 30 percent ceiling.",
            "paraphrase": "Compensation grows with the length of the outage, up to a limit.",
            "translation": "Unsere SLA-Gutschrift beträgt 5 Prozent pro Stunde Ausfall, höchstens 30 Prozent.",
        },
        ["Our service level agreement is published on the legal page.",
         "You can read our service level agreement on the legal page."],
    ),
    (
        "Support macros live in the shared drive folder Support/Macros/2026 owned by Priya.",
        "Answers to common questions are in our help center.",
        {
            "verbatim": "Support macros live in the shared drive folder Support/Macros.",
            "inserted": "Our support macros all live in the big shared drive folder called Support.",
            "spaced": "They are in S u p p o r t / Macros.",
            "paraphrase_detail": "Priya keeps the 2026 reply templates.",
            "paraphrase": "We keep ready-made answers in an internal folder.",
            "translation": "Support-Makros liegen im geteilten Laufwerk unter Support/Macros/2026, Eigentümerin Priya.",
        },
        ["Answers to common questions are in our help center.",
         "Our help center has answers to the most common questions."],
    ),
]

# Written after the guard's rules were settled, and evaluated once: the numbers to quote.
HELD_OUT: list[tuple[str, str, dict[str, str], list[str]]] = [
    (
        "Escalate billing errors over 1000 USD to controller Mei Tanaka; her direct line is 030 5557 2210.",
        "Billing errors are corrected on your next invoice. Contact Billing Support in Berlin for questions.",
        {
            "verbatim": "Escalate billing errors over 1000 USD to controller Mei Tanaka right away.",
            "inserted": "Please escalate any large billing errors over 1000 USD straight to our controller, Mei.",
            "spaced": "Call 0 3 0 5 5 5 7 2 2 1 0 for billing errors.",
            "paraphrase_detail": "Mei from our finance team will look at errors this large.",
            "paraphrase": "Very large invoice mistakes are reviewed by a senior person in finance.",
            "translation": "Rechnungsfehler über 1000 USD an die Controllerin Mei Tanaka eskalieren.",
        },
        ["Billing errors are corrected on your next invoice.",
         "Our Billing Support in Berlin can answer questions; errors are corrected on your next invoice."],
    ),
    (
        "Test accounts use the shared login qa-team@corp.example with password Spring!2026 on staging.corp.example.",
        "You can try Mailsense free for 30 days; no credit card is needed.",
        {
            "verbatim": "Test accounts use the shared login qa-team@corp.example on staging.",
            "inserted": "Our test accounts all use a shared login which is qa-team at corp for staging.",
            "spaced": "Log in at s t a g i n g . corp . example to try it.",
            "paraphrase_detail": "You could also try our staging.corp.example environment.",
            "paraphrase": "We have a separate environment for trying things out.",
            "translation": "Testkonten nutzen das gemeinsame Login qa-team@corp.example auf staging.corp.example.",
        },
        ["You can try Mailsense free for 30 days; no credit card is needed.",
         "A free 30-day trial is available, and no credit card is needed."],
    ),
    (
        "The Hamburg data center migration on 14 March will cause a 2-hour outage; customers are not told yet.",
        "Planned maintenance is announced on the status page 7 days in advance.",
        {
            "verbatim": "The Hamburg data center migration on 14 March will cause an outage.",
            "inserted": "The Hamburg data center migration planned on 14 March will probably cause outages.",
            "spaced": "Expect downtime when H a m b u r g moves.",
            "paraphrase_detail": "Our Hamburg site moves in March, so expect a short break.",
            "paraphrase": "A move of our servers next spring will mean some downtime.",
            "translation": "Die Migration des Rechenzentrums Hamburg am 14. März verursacht zwei Stunden Ausfall.",
        },
        ["Planned maintenance is announced on the status page 7 days in advance.",
         "We announce planned maintenance on the status page seven days ahead."],
    ),
    (
        "Goodwill credits are approved by team lead Jonas up to 50 EUR without a ticket.",
        "If you are unhappy with our service, tell us and we will look into it.",
        {
            "verbatim": "Goodwill credits are approved by team lead Jonas up to 50 EUR.",
            "inserted": "Goodwill credits are normally approved by our team lead Jonas for you.",
            "spaced": "Ask J o n a s for a credit.",
            "paraphrase_detail": "Jonas can give you a small credit.",
            "paraphrase": "We can sometimes offer a small credit as a gesture.",
            "translation": "Kulanzgutschriften bis 50 EUR genehmigt Teamleiter Jonas ohne Ticket.",
        },
        ["If you are unhappy with our service, tell us and we will look into it.",
         "Tell us if you are unhappy with the service and we will look into it."],
    ),
    (
        "Fraud flag FR-77 blocks accounts automatically after three failed card payments; unblock via the risk tool.",
        "After three failed card payments we pause the account and email you; update your card to continue.",
        {
            "verbatim": "Fraud flag FR-77 blocks accounts automatically after three failed card payments.",
            "inserted": "A fraud flag, FR-77, automatically blocks the account after three failed payments.",
            "spaced": "Your account has flag F R - 7 7.",
            "paraphrase_detail": "The FR-77 check stopped your account.",
            "paraphrase": "Our automated checks stopped the account after several declined payments.",
            "translation": "Das Betrugskennzeichen FR-77 sperrt Konten nach drei fehlgeschlagenen Kartenzahlungen.",
        },
        ["After three failed card payments we pause the account and email you; update your card to continue.",
         "Your account was paused after three failed card payments. Update your card to continue."],
    ),
    (
        "Internal release notes for 4.8 are at confluence.corp.example/REL/4.8; the export bug is still open.",
        "Version 4.8 adds dark mode and faster search. See the changelog in the app.",
        {
            "verbatim": "Internal release notes for 4.8 are at confluence.corp.example, the export bug is open.",
            "inserted": "The internal release notes for version 4.8 are kept at confluence for now.",
            "spaced": "See c o n f l u e n c e . corp.example for details.",
            "paraphrase_detail": "More on confluence.corp.example/REL/4.8.",
            "paraphrase": "Exporting may still have a known problem in this version.",
            "translation": "Interne Versionshinweise zu 4.8 liegen auf confluence.corp.example; der Exportfehler ist offen.",
        },
        ["Version 4.8 adds dark mode and faster search. See the changelog in the app.",
         "In version 4.8 you get dark mode and faster search; the changelog is in the app."],
    ),
]

KINDS = ("verbatim", "inserted", "spaced", "paraphrase_detail", "paraphrase", "translation")
LINK_CASES = [
    ("See https://help.example.com/router for the steps.", ["Steps: https://help.example.com/router"], False),
    ("See https://help.example.com/router/ for the steps.", ["Steps: https://help.example.com/router"], False),
    ("Download the fix from https://fix-router.example.net/download.", ["Steps: https://help.example.com/router"], True),
    ("Details at www.help.example.com/refunds.", ["Refund policy: https://help.example.com/refunds"], False),
    ("Log in at https://help.example.com.evil.example/login.", ["Log in at https://help.example.com"], True),
]


def baseline_guard(draft: str, internal: str, public: str) -> bool:
    """The baseline: verbatim six-word runs of plain words (all a guard of exact copies catches)."""
    word = re.compile(r"[^\W_]+", re.UNICODE)

    def sh(text: str) -> set[tuple[str, ...]]:
        w = word.findall(text.lower())
        if len(w) < 6:
            return {tuple(w)} if len(w) >= 3 else set()
        return {tuple(w[i : i + 6]) for i in range(len(w) - 5)}

    return bool(sh(draft) & (sh(internal) - sh(public)))


def evaluate(cases: list[tuple[str, str, dict[str, str], list[str]]]) -> dict[str, object]:
    caught: dict[str, dict[str, int]] = {"baseline": defaultdict(int), "guard": defaultdict(int)}
    flagged = {"baseline": 0, "guard": 0}
    clean_total = 0
    missed: list[str] = []
    for internal, public, leaks, clean in cases:
        for kind in KINDS:
            draft = leaks[kind]
            caught["baseline"][kind] += baseline_guard(draft, internal, public)
            hit = internal_leak(draft, [internal], [public]) is not None
            caught["guard"][kind] += hit
            if not hit and kind not in ("paraphrase", "translation"):
                missed.append(f"{kind}: {draft}")
        for draft in clean:
            clean_total += 1
            flagged["baseline"] += baseline_guard(draft, internal, public)
            if internal_leak(draft, [internal], [public]) is not None:
                flagged["guard"] += 1
                missed.append(f"clean draft flagged: {draft}")
    return {
        "notes": len(cases),
        "caught": {guard: {kind: caught[guard][kind] for kind in KINDS} for guard in caught},
        "clean_drafts": clean_total,
        "clean_flagged": flagged,
        "misses": missed,
    }


def main() -> None:
    result = {
        "tuning_set": evaluate(CASES),
        "held_out_set": evaluate(HELD_OUT),
        "links_judged_right": f"{sum((bool(foreign_links(d, s)) == bad) for d, s, bad in LINK_CASES)}"
        f"/{len(LINK_CASES)}",
    }
    out = ROOT / "bench" / "results" / "guard.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    for name in ("tuning_set", "held_out_set"):
        part = result[name]
        assert isinstance(part, dict)
        print(f"{name}: {part['notes']} notes")
        print(f"  {'kind':<18} {'baseline':>9} {'guard':>9}")
        for kind in KINDS:
            print(f"  {kind:<18} {part['caught']['baseline'][kind]:>9} {part['caught']['guard'][kind]:>9}")
        print(f"  {'clean flagged':<18} {part['clean_flagged']['baseline']:>9} {part['clean_flagged']['guard']:>9}"
              f"   (of {part['clean_drafts']})")
        for line in part["misses"]:
            print("   ", line)
    print(f"links judged right: {result['links_judged_right']}")

if __name__ == "__main__":
    main()
