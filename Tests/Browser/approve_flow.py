#!/usr/bin/env python3
"""Real-browser test: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium
signs in to a live `waiver serve`, opens the inbox, approves a request and sees it approved; then
signs in again through single sign-on with the test OpenID provider (Tests/Identity/oidc_provider.py).

usage: approve_flow.py [--binary .build/debug/waiver] [--screenshots docs/screenshots]
Prints "N passed, M failed" and exits 1 on any failure.
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(binary, args, cwd, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([binary] + args, cwd=cwd, env=e, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("waiver %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr))
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.environ.get("WAIVER_BIN", os.path.join(ROOT, ".build/debug/waiver")))
    ap.add_argument("--screenshots", help="write PNG screenshots of the main pages here")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="waiver-browser-")
    shutil.copytree(os.path.join(ROOT, "policies"), os.path.join(work, "policies"))
    shutil.copy(os.path.join(ROOT, "waiver.yaml"), work)
    # Single sign-on through the test OpenID provider, beside token sign-in.
    provider = subprocess.Popen([sys.executable, os.path.join(ROOT, "Tests/Identity/oidc_provider.py")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = provider.stdout.readline().strip()
    if not line.startswith("LISTENING "):
        print("FAIL - the test OpenID provider did not start (pip install flask joserfc authlib)")
        sys.exit(1)
    issuer = line.split(" ", 1)[1]
    with open(os.path.join(work, "waiver.yaml"), "a") as f:
        f.write("\nidentity:\n  oidc:\n    issuer: %s\n    client_id: waiver\n    client_secret_env: OIDC_SECRET\n"
                "    name: Test IdP\n    group_map: { sec-team: security }\n" % issuer)
    db = "sqlite:" + os.path.join(work, "register.sqlite")
    tokens = {}
    for name, group in [("dev@example.com", "developers"), ("sam@example.com", "security"), ("em@example.com", "engineering-managers")]:
        tokens[name] = run(a.binary, ["admin", "add-user", name, "--group", group, "--database", db], work).stdout.strip()
    port = free_port()
    url = "http://127.0.0.1:%d" % port
    server = subprocess.Popen([a.binary, "serve", "--port", str(port), "--database", db], cwd=work,
                              env=dict(os.environ, OIDC_SECRET="waiver-secret"),
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    passed, failed = 0, 0
    driver = None
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        remote = {"WAIVER_SERVER": url, "WAIVER_TOKEN": tokens["dev@example.com"]}
        # The pipeline files requests for the example plan's violations, as in a real run.
        run(a.binary, ["check", "--plan", os.path.join(ROOT, "Examples/plans/web-app.json"), "--workspace", "shop",
                       "--request", "--reason", "Launch on Friday; tracked in CHG-1234", "--likelihood", "low",
                       "--mitigation", "Source IPs limited at the NACL"], work, remote, check=False)
        options = Options()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900", "--disable-gpu"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
        driver.set_page_load_timeout(20)

        def shot(name):
            if a.screenshots:
                os.makedirs(a.screenshots, exist_ok=True)
                driver.save_screenshot(os.path.join(a.screenshots, name + ".png"))

        def click_and_wait(element):
            """Clicks a link or submit button and waits for the next page to have loaded, not just started."""
            old = driver.find_element(By.TAG_NAME, "html")
            element.click()

            def gone(_):
                # Chromium may answer for a node of the old document with "does not belong to the
                # document" rather than a stale reference while the new page replaces it: both mean gone.
                try:
                    old.is_enabled()
                    return False
                except StaleElementReferenceException:
                    return True
                except WebDriverException as e:
                    if "does not belong to the document" in str(e):
                        return True
                    raise
            WebDriverWait(driver, 20).until(gone)
            WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")

        def check(name, cond):
            nonlocal passed, failed
            if cond:
                passed += 1
                print("ok   - " + name)
            else:
                failed += 1
                print("FAIL - " + name)

        driver.get(url + "/inbox")
        check("an unauthenticated visit lands on sign-in", driver.current_url.endswith("/login"))
        shot("login")
        driver.find_element(By.ID, "token").send_keys(tokens["sam@example.com"])
        click_and_wait(driver.find_element(By.ID, "signin"))
        check("signing in opens the inbox", driver.current_url.endswith("/inbox"))
        links = driver.find_elements(By.CSS_SELECTOR, "a.exception-link")
        check("the inbox lists what sam may approve", len(links) >= 1)
        shot("inbox")
        target = None
        for l in links:
            row = l.find_element(By.XPATH, "./ancestor::tr").text
            if "NET-001" in row:
                target = l
        check("the SSH exception is in sam's inbox", target is not None)
        exception_id = target.text
        click_and_wait(target)
        check("the exception page shows the violation the pipeline saw", "ingress[0].cidr_blocks" in driver.page_source)
        check("the exception is pending", driver.find_element(By.ID, "status").text.lower() == "pending")
        shot("exception")
        driver.find_element(By.ID, "comment").send_keys("Vendor window agreed until Friday")
        click_and_wait(driver.find_element(By.ID, "approve"))
        status = driver.find_element(By.ID, "status").text.lower()
        check("after approving, the page shows it approved", status == "approved")
        check("the history shows the approval", "exception.approved" in driver.find_element(By.ID, "history").text)
        shot("exception-approved")
        approved = run(a.binary, ["show", exception_id, "--format", "json"], work, remote).stdout
        check("the register agrees (via the API)", '"status": "approved"' in approved)
        # Evidence with its display text, added from the page by the requester after the decision.
        dev_cookie = None
        driver.delete_all_cookies()
        driver.get(url + "/login")
        driver.find_element(By.ID, "token").send_keys(tokens["dev@example.com"])
        click_and_wait(driver.find_element(By.ID, "signin"))
        driver.get(url + "/exceptions/" + exception_id)
        proof = os.path.join(work, "vendor-window.txt")
        with open(proof, "w") as f:
            f.write("CHG-1234 approved vendor window")
        driver.find_element(By.ID, "evidence-file").send_keys(proof)
        driver.find_element(By.ID, "evidence-text").send_keys("Change CHG-1234: the vendor's access window, signed off")
        click_and_wait(driver.find_element(By.ID, "add-evidence"))
        evidence = driver.find_element(By.ID, "evidence").text
        check("evidence added from the page shows its display text and file",
              "Change CHG-1234: the vendor's access window, signed off" in evidence and "vendor-window.txt" in evidence and "after the decision" in evidence)
        driver.execute_script("document.getElementById('evidence').scrollIntoView()")
        shot("exception-evidence")
        # The same security group opened to every port: the approval covers only what was approved.
        with open(os.path.join(ROOT, "Examples/plans/web-app.json")) as f:
            plan = json.load(f)
        def widen(node):
            if isinstance(node, dict):
                if str(node.get("address", "")).endswith("aws_security_group.bastion"):
                    for holder in (node.get("change", {}).get("after"), node.get("values")):
                        for rule in (holder or {}).get("ingress", []) or []:
                            rule["from_port"], rule["to_port"] = 0, 65535
                for v in node.values():
                    widen(v)
            elif isinstance(node, list):
                for v in node:
                    widen(v)
        widen(plan)
        widened = os.path.join(work, "web-app-widened.json")
        with open(widened, "w") as f:
            json.dump(plan, f)
        run(a.binary, ["check", "--plan", widened, "--workspace", "shop"], work, remote, check=False)
        driver.get(url + "/exceptions/" + exception_id)
        check("a widened resource is shown as changed since approval, beside the approved values",
              len(driver.find_elements(By.ID, "changed")) == 1 and "65535" in driver.find_element(By.ID, "changed").text
              and "to_port = 22" in driver.find_element(By.CSS_SELECTOR, "dd.bound").text)
        driver.execute_script("document.querySelector('dd.bound').scrollIntoView()")
        shot("exception-changed")
        driver.find_element(By.ID, "amend-reason").send_keys("The vendor's migration tool needs the whole range for one day")
        click_and_wait(driver.find_element(By.ID, "amend"))
        check("the amended request is filed, pending, bound to the new values",
              driver.find_element(By.ID, "status").text.lower() == "pending" and "to_port = 65535" in driver.find_element(By.CSS_SELECTOR, "dd.bound").text)
        # My requests: dev's own, grouped.
        driver.get(url + "/mine")
        check("My requests lists dev's pending and active requests", len(driver.find_elements(By.CSS_SELECTOR, "#pending tbody tr")) >= 1
              and len(driver.find_elements(By.CSS_SELECTOR, "#active tbody tr")) == 1)
        shot("mine")
        # A renewal, seen side by side with the exception it renews.
        renewal = run(a.binary, ["request", "--renews", exception_id, "--reason", "The vendor needs a second week: the migration slipped",
                                 "--format", "json"], work, remote).stdout
        renewal_id = json.loads(renewal)["id"]
        driver.delete_all_cookies()
        driver.get(url + "/login")
        driver.find_element(By.ID, "token").send_keys(tokens["sam@example.com"])
        click_and_wait(driver.find_element(By.ID, "signin"))
        driver.get(url + "/exceptions/" + renewal_id)
        check("a renewal shows the previous reason beside the new one",
              driver.find_element(By.ID, "previous-reason").text == "Launch on Friday; tracked in CHG-1234"
              and "migration slipped" in driver.find_element(By.ID, "new-reason").text)
        check("the approver sees how often the policy was excepted", "In the last four quarters NET-001 had" in driver.find_element(By.ID, "frequency").text)
        driver.execute_script("document.getElementById('frequency').scrollIntoView()")
        shot("renewal")
        # A batch: engineering managers decide the run's requests routed to them with one form.
        driver.delete_all_cookies()
        driver.get(url + "/login")
        driver.find_element(By.ID, "token").send_keys(tokens["em@example.com"])
        click_and_wait(driver.find_element(By.ID, "signin"))
        forms = driver.find_elements(By.CSS_SELECTOR, "form.batch-form")
        check("one pipeline run's requests form one batch in em's inbox", len(forms) == 1)
        boxes = forms[0].find_elements(By.CSS_SELECTOR, "input[type=checkbox]") if forms else []
        shot("inbox-batch")
        if forms:
            forms[0].find_element(By.TAG_NAME, "textarea").send_keys("Capacity and naming agreed for the launch")
            click_and_wait(forms[0].find_element(By.CSS_SELECTOR, "button[value=approve]"))
        notice = driver.find_element(By.CSS_SELECTOR, ".notice").text if driver.find_elements(By.CSS_SELECTOR, ".notice") else ""
        check("the batch decided each selected request (%d)" % len(boxes), len(boxes) >= 2 and notice.count("by em@example.com") == len(boxes))
        # The audit package downloads from /audit as a ZIP.
        driver.get(url + "/audit")
        check("the audit page offers the package", len(driver.find_elements(By.ID, "download-package")) == 1)
        session = "; ".join("%s=%s" % (c["name"], c["value"]) for c in driver.get_cookies())
        frm = driver.find_element(By.NAME, "from").get_attribute("value")
        to = driver.find_element(By.NAME, "to").get_attribute("value")
        pkg = urllib.request.urlopen(urllib.request.Request("%s/audit/package?from=%s&to=%s" % (url, frm, to), headers={"Cookie": session}), timeout=30)
        body = pkg.read()
        check("the package is a ZIP download", pkg.headers.get("Content-Type") == "application/zip" and body[:2] == b"PK"
              and "attachment" in pkg.headers.get("Content-Disposition", ""))
        # The other main pages, for the README.
        driver.get(url + "/register")
        check("the register lists every request", len(driver.find_elements(By.CSS_SELECTOR, "#register tbody tr")) >= 5)
        shot("register")
        driver.get(url + "/policies/NET-001")
        check("the policy page draws its quarterly chart", len(driver.find_elements(By.ID, "chart")) == 1)
        shot("policy")
        driver.get(url + "/review")
        shot("review")
        driver.get(url + "/audit")
        check("the audit page reports the chain verified", "intact up to event" in driver.find_element(By.ID, "chain").text)
        anchor = driver.find_element(By.ID, "anchor").text
        check("the audit page shows the anchor to keep", "Anchor: " in anchor and len(anchor.split("Anchor: ")[1].split(".")[0].split(":")[1]) == 64)
        shot("audit")
        driver.set_window_size(390, 844)
        driver.get(url + "/exceptions/" + exception_id)
        width = driver.execute_script("return document.documentElement.scrollWidth")
        check("usable at a phone's width (no horizontal scrolling)", width <= 400)
        shot("phone-exception")
        # Single sign-on: a new browser session signs in through the provider and lands in the inbox.
        driver.set_window_size(1280, 900)
        driver.delete_all_cookies()
        req = urllib.request.Request(issuer + "/control/oidc", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"user": {"sub": "u-ada", "email": "ada@example.com", "email_verified": True,
                                                               "groups": ["sec-team"]}}).encode())
        urllib.request.urlopen(req, timeout=10)
        driver.get(url + "/login")
        check("the sign-in page offers the provider", "Sign in with Test IdP" in driver.find_element(By.ID, "sso").text)
        driver.find_element(By.ID, "sso").click()
        WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith("/inbox"))
        check("single sign-on ends in the inbox, signed in", "ada@example.com" in driver.page_source)
        check("ada, in security at the provider, sees what security may approve",
              len(driver.find_elements(By.CSS_SELECTOR, "a.exception-link")) >= 1)
        shot("sso-inbox")
    except Exception as e:
        failed += 1
        import traceback; traceback.print_exc()
        print("FAIL - unexpected: %r" % (e,))
        if driver:
            print(driver.current_url, driver.find_element(By.TAG_NAME, "main").text[:500])
    finally:
        if driver:
            driver.quit()
        server.terminate()
        server.wait(timeout=10)
        provider.terminate()
        shutil.rmtree(work, ignore_errors=True)
    print("browser: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
