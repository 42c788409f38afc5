from django.shortcuts import render

from aipk_site.console.access import staff_required


@staff_required
def provider_list(request):  # TEMPORARY: replaced by the providers helper
    return render(request, "console/dashboard.html", {"nav_section": "providers"})


@staff_required
def credential_list(request):  # TEMPORARY: replaced by the providers helper
    return render(request, "console/dashboard.html", {"nav_section": "credentials"})
