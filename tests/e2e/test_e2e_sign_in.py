"""Signing in to the console in a real browser."""

import re

from tests.e2e.conftest import PASSWORD


def test_it_signs_in_through_the_form_and_lands_on_the_dashboard(console, console_user):
    ada = console_user("ada", is_staff=True)

    console.goto("/console/")
    console.page.wait_for_url(re.compile(r".*/console/login/\?next=/console/"))
    console.shot("login")
    console.sign_in(ada)

    assert console.page.get_by_role("heading", name="Dashboard").is_visible()
    console.shot("dashboard")


def test_it_refuses_a_wrong_password_and_says_so(console, console_user):
    ada = console_user("ada", is_staff=True)

    console.goto("/console/login/")
    console.page.get_by_label("Username").fill(ada.username)
    console.page.get_by_label("Password").fill(PASSWORD + "!")
    console.page.get_by_role("button", name="Sign in").click()

    assert console.page.get_by_role("alert").is_visible()
    assert "/console/login/" in console.page.url
