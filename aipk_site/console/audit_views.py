from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def audit_log(request):  # TEMPORARY: replaced by the audit helper
    return render(request, "console/dashboard.html", {"nav_section": "audit"})
