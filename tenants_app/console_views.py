from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from aipk_site.console.access import console_tenant


@login_required
def tenant_list(request):  # TEMPORARY: replaced by the tenants helper
    return render(request, "console/dashboard.html", {"nav_section": "tenants"})


@login_required
def tenant_detail(request, slug):  # TEMPORARY: replaced by the tenants helper
    console_tenant(request, slug)
    return render(request, "console/dashboard.html", {"nav_section": "tenants"})
